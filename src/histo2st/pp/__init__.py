"""Preprocessing (``st.pp``): normalisation and gene selection, scanpy conventions."""
