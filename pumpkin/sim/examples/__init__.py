"""Algorithms written on ``pumpkin.sim``, each with the checker that judges its runs."""
