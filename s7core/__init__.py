"""s7core: the library behind the s7 dashboard — specs, models, receptive fields, training.

Nothing here imports streamlit; every number a page shows comes from a function here.
"""

__version__ = "0.1.0"
