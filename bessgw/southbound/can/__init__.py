"""The CAN southbound transport (python-can): buses, readers, per-node links."""
