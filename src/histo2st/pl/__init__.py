"""Plotting (``st.pl``)."""
