"""The command lines: ``run`` (behind run_recbole_llada.py) and ``build_sids``
(``python -m recbole_llada.cli.build_sids``)."""
