"""The city simulation behind `bench/simulate.py`: a seeded city (`city`), its database
(`db`), the discrete-event loop that drives the real services (`engine`), and the report
(`report`)."""
