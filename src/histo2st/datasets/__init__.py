"""Data sets (``st.datasets``): synthetic tissue with dense ground truth, and public data."""
