"""The BitPredict Streamlit front end."""
