"""ztp: a zero-touch provisioning appliance."""

__version__ = "0.1.0"
