"""What a service reads from the running app: its settings, and the ETA model they give."""

from __future__ import annotations

from flask import current_app

from dispatch.infra.config import Settings
from geo.eta import EtaModel


def settings() -> Settings:
    return current_app.config["DISPATCH"]

def eta_model(s: Settings) -> EtaModel:
    return EtaModel.from_setting(s.travel_speeds_kmh, s.circuity, s.startup_s)
