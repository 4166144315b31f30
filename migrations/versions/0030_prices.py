"""prices: each bookable category's price list, and a job's estimate and final amount.

- `categories`: call-out fee, hourly rate range (low/high), the urgent (two-hour) surcharge
  and the platform's fee percentage, all money in integer minor units of settings CURRENCY.
  Seeded per branch of 0002's tree: a plumber's visit is priced unlike a dog walk.
- `jobs.estimate_low_cents` / `estimate_high_cents`: the range the requester was shown,
  fixed at booking (prices may change later; the promise made may not).
- `jobs.final_amount_cents`: what the job came to (filled by the completion form); the
  suggested ranges (services.pricing) are percentiles of it.
- An index of completed jobs with a final amount, by category and geohash-5 cell
  (services.pricing.AREA_GEOHASH_CHARS), which is what the suggested range reads.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

# path prefix -> (call-out, hourly low, hourly high, urgent surcharge, platform fee %).
# The longest matching prefix wins. Trades charge a call-out; pet care is by the hour only.
PRICES = {
    "home-repair": (5900, 8000, 14000, 4000, 15),
    "home-repair/electrical": (6900, 9000, 15000, 5000, 15),
    "home-repair/locksmith": (4900, 6000, 11000, 3500, 15),
    "home-repair/appliances": (6900, 8000, 13000, 4000, 15),
    "home-repair/heating-cooling": (7900, 9000, 15000, 5000, 15),
    "home-repair/glass-windows": (5900, 7000, 12000, 4000, 15),
    "pet-care": (0, 2000, 3500, 1500, 20),
    "cleaning": (2900, 4000, 7000, 3000, 18),
    "moving-help": (3900, 5000, 9000, 3000, 18),
}


def upgrade() -> None:
    op.execute("""
ALTER TABLE categories
    ADD COLUMN call_out_cents integer NOT NULL DEFAULT 0,
    ADD COLUMN hourly_low_cents integer NOT NULL DEFAULT 5000,
    ADD COLUMN hourly_high_cents integer NOT NULL DEFAULT 9000,
    ADD COLUMN urgent_surcharge_cents integer NOT NULL DEFAULT 0,
    ADD COLUMN platform_fee_percent integer NOT NULL DEFAULT 15,
    ADD CONSTRAINT ck_categories_prices CHECK (
        call_out_cents >= 0 AND urgent_surcharge_cents >= 0
        AND hourly_low_cents > 0 AND hourly_high_cents >= hourly_low_cents
        AND platform_fee_percent BETWEEN 0 AND 100);
ALTER TABLE jobs
    ADD COLUMN estimate_low_cents integer,
    ADD COLUMN estimate_high_cents integer,
    ADD COLUMN final_amount_cents integer,
    ADD CONSTRAINT ck_jobs_estimate CHECK (
        (estimate_low_cents IS NULL) = (estimate_high_cents IS NULL)
        AND estimate_low_cents >= 0 AND estimate_high_cents >= estimate_low_cents),
    ADD CONSTRAINT ck_jobs_final_amount CHECK (final_amount_cents >= 0);
CREATE INDEX ix_jobs_priced_area ON jobs (category_id, ST_GeoHash(location::geometry, 5),
                                          completed_at)
    WHERE final_amount_cents IS NOT NULL;
""")
    conn = op.get_bind()
    for prefix in sorted(PRICES, key=len):  # shorter prefixes first: the longest wins
        call_out, low, high, surcharge, fee = PRICES[prefix]
        conn.execute(sa.text(
            "UPDATE categories SET call_out_cents = :c, hourly_low_cents = :lo, "
            "hourly_high_cents = :hi, urgent_surcharge_cents = :s, platform_fee_percent = :f "
            "WHERE path = :p OR path LIKE :under"),
            {"c": call_out, "lo": low, "hi": high, "s": surcharge, "f": fee, "p": prefix,
             "under": prefix + "/%"})


def downgrade() -> None:
    op.execute("""
DROP INDEX ix_jobs_priced_area;
ALTER TABLE jobs DROP CONSTRAINT ck_jobs_final_amount, DROP CONSTRAINT ck_jobs_estimate,
    DROP COLUMN final_amount_cents, DROP COLUMN estimate_high_cents,
    DROP COLUMN estimate_low_cents;
ALTER TABLE categories DROP CONSTRAINT ck_categories_prices,
    DROP COLUMN platform_fee_percent, DROP COLUMN urgent_surcharge_cents,
    DROP COLUMN hourly_high_cents, DROP COLUMN hourly_low_cents, DROP COLUMN call_out_cents;
""")
