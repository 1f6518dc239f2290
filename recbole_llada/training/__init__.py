"""Training and evaluation runs under the shared protocol: the LLaDARec trainer, one model / several side by side
(``quick_start``), exact resuming, and the comparison tables with their provenance (``results``)."""
