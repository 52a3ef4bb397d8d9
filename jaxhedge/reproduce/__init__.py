"""The papers' real-data study (METHODS §5): static IV fit vs after-cost hedging.

``jaxhedge reproduce`` runs it end to end; the pieces are :mod:`.summary` (winners and
rank correlations from the two result tables) and :mod:`.study` (the orchestration).
"""
