"""Tools (``st.tl``): aggregation, model fitting and prediction."""
