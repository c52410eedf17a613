"""Hydra configuration files of jpq (installed as the package ``jpq.conf``)."""
