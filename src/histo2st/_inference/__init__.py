"""Plumbing that training and prediction share: tiles with context halos over an image, and windows of spots.

Below the models and the training plans (both use it), above the network blocks (:mod:`histo2st.nn`), so imports
run one way: ``model`` and ``train`` -> ``_inference`` -> ``nn``.
"""
