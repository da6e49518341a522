"""ipgeo: a self-hosted IP geolocation web service."""

__version__ = "0.1.0"
