"""Pure PyTorch models of V-JEPA 2: encoder, predictors, masks, probe, AC predictor, CEM planner.

Imports torch and numpy only: no Ray, no Prefect, no I/O beyond checkpoint files.
"""
