"""The web layer over ``ipgeo.geo``: the request pipeline (``pipeline.py``) and the Flask pages."""

from ipgeo.web.app import create_app

__all__ = ["create_app"]
