"""The s7 dashboard: design a small CIFAR-10 convnet, see its receptive field, train it, study it.

Run with `streamlit run app.py`. This script only sets the page up, lists the pages and
draws the shared sidebar; each page is a short script in pages/ over s7core calls.
Nothing heavy happens here: no data loading, no model building.
"""

from pathlib import Path

import streamlit as st

from pages._classroom import gate, sign_in_page
from pages._shared import load_network_from_query, show_error, sidebar
from s7core.priority import as_page_thread

as_page_thread()  # this session's script yields the cores to training runs (s7core/priority.py says why)

ROOT = Path(__file__).resolve().parent

# (file, title, icon, url path); pages whose file is not there are left out of the menu.
PAGES = [
    ("pages/architecture.py", "Architecture", ":material/schema:", "architecture"),
    ("pages/receptive_field.py", "Receptive field", ":material/filter_center_focus:", "receptive_field"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/results.py", "Results", ":material/leaderboard:", "results"),
    ("pages/misclassified.py", "Misclassified", ":material/image_search:", "misclassified"),
    ("pages/leaderboard.py", "Leaderboard", ":material/trophy:", "leaderboard"),
]
CLASS_PAGES = [("pages/class_admin.py", "Class", ":material/school:", "class")]  # a signed-in teacher's only

st.set_page_config(page_title="s7: small convnets on CIFAR-10", page_icon=":material/grid_on:", layout="wide")

# Class mode: until someone signs in, the sign-in page is the only page there is, whatever address was asked for.
user = gate()
if user is None:
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="sign_in")]).run()
    st.stop()
shown = PAGES + (CLASS_PAGES if user.signed_in and user.is_teacher else [])
page = st.navigation(
    [
        st.Page(path, title=title, icon=icon, url_path=url, default=i == 0)
        for i, (path, title, icon, url) in enumerate(shown)
        if (ROOT / path).is_file()
    ]
)
# A shared link (?preset=NAME or ?spec=...) loads its network whichever page it opens.
link_error = load_network_from_query()
if link_error:
    show_error(link_error)
sidebar()
page.run()
