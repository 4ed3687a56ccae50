"""The serving runtime that runs inside every serving pod: stores, integrity check, loaders, HTTP.

Import name `modelapp_serving` (the folder is `serving/`). It never imports `modelapp_operator`.
"""

__version__ = "0.1.0"
