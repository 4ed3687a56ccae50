"""The ModelApp operator: spec model, pure builders, reconcile handlers and the `modelapp` CLI.

Import name `modelapp_operator` (the folder is `operator/`, a name the standard library owns).
The serving runtime (`modelapp_serving`) never imports this package; this package may import it.
"""

__version__ = "0.1.0"
