"""the service category tree (reference data)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (slug, name, children); leaves are bookable.
TREE = [
    ("home-repair", "Home repair", [
        ("plumbing", "Plumbing", [
            ("leak-repair", "Leak repair", []),
            ("drain-unclogging", "Drain unclogging", []),
            ("water-heater", "Water heater", []),
        ]),
        ("electrical", "Electrical", [
            ("power-outage", "Power outage", []),
            ("outlets-switches", "Outlets and switches", []),
        ]),
        ("locksmith", "Locksmith", [
            ("lockout", "Lockout", []),
            ("lock-change", "Lock change", []),
        ]),
        ("appliances", "Appliance repair", [
            ("fridge-freezer", "Fridge and freezer", []),
            ("washer-dryer", "Washer and dryer", []),
        ]),
        ("heating-cooling", "Heating and cooling", [
            ("heating-repair", "Heating repair", []),
            ("ac-repair", "Air conditioning repair", []),
        ]),
        ("glass-windows", "Glass and windows", [
            ("broken-window", "Broken window", []),
        ]),
    ]),
    ("pet-care", "Pet care", [
        ("dog-walking", "Dog walking", []),
        ("pet-sitting", "Pet sitting", []),
        ("vet-transport", "Emergency vet transport", []),
    ]),
    ("cleaning", "Cleaning", [
        ("water-damage-cleanup", "Water damage cleanup", []),
        ("move-out-cleaning", "Move-out cleaning", []),
    ]),
    ("moving-help", "Moving help", [
        ("heavy-lifting", "Heavy lifting", []),
    ]),
]


def upgrade() -> None:
    conn = op.get_bind()

    def insert(nodes: list, parent_id: int | None, parent_path: str) -> None:
        for slug, name, children in nodes:
            path = f"{parent_path}/{slug}" if parent_path else slug
            new_id = conn.execute(
                sa.text("INSERT INTO categories (parent_id, slug, name, path, bookable) "
                        "VALUES (:p, :s, :n, :path, :b) RETURNING id"),
                {"p": parent_id, "s": slug, "n": name, "path": path, "b": not children},
            ).scalar_one()
            insert(children, new_id, path)

    insert(TREE, None, "")


def downgrade() -> None:
    op.execute("DELETE FROM categories")
