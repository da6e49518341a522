"""The Flask web layer: a thin shell over ``ipgeo.geo``."""

from ipgeo.web.app import create_app

__all__ = ["create_app"]
