"""Hyperparameter search with Ray Tune (``tune``) and its tables and plot (``report``)."""
