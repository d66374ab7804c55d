"""Architecture: edit the network layer by layer."""

import streamlit as st

from pages._shared import get_spec

st.title("Architecture")
st.write(get_spec().name)
