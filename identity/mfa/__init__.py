"""Second-factor primitives: small, pure, no storage (cf. Warehouse ``utils/otp.py``)."""
