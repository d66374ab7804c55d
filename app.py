"""The s7 dashboard: design a small CIFAR-10 convnet, see its receptive field, train it, study it.

Run with `streamlit run app.py`. This script only sets the page up, lists the pages and
draws the shared sidebar; each page is a short script in pages/ over s7core calls.
Nothing heavy happens here: no data loading, no model building.
"""

from pathlib import Path

import streamlit as st

from pages._classroom import gate, sign_in_page
from pages._display import css
from pages._shared import SHELL_KEY, load_network_from_query, show_error, sidebar
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
CLASS_PAGES = [("pages/class.py", "Class", ":material/school:", "class")]  # a signed-in teacher's only

st.set_page_config(page_title="s7: small convnets on CIFAR-10", page_icon=":material/grid_on:", layout="wide")

# Class mode: until someone signs in, the sign-in page is the only page there is, whatever address was asked for.
user = gate()
if user is None:
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="sign_in")]).run()
    st.stop()
shown = PAGES + (CLASS_PAGES if user.signed_in and user.is_teacher else [])
# The default page is served at / (its url_path only has to be unique), so its own name goes to the alias below.
pages = [
    st.Page(path, title=title, icon=icon, url_path=f"{url}-start" if i == 0 else url, default=i == 0)
    for i, (path, title, icon, url) in enumerate(shown)
    if (ROOT / path).is_file()
]


def _to_default_page() -> None:
    """The default page is served at /; its own name in the address (/architecture) leads there too."""
    st.switch_page(pages[0], query_params=dict(st.query_params))


# A hidden page under the default page's own path: typing /architecture opens Architecture, not "not found".
alias = st.Page(_to_default_page, title=PAGES[0][1], url_path=PAGES[0][3], visibility="hidden")
page = st.navigation([*pages, alias])
# A shared link (?preset=NAME or ?spec=...) loads its network whichever page it opens.
link_error = load_network_from_query()
if link_error:
    show_error(link_error)
st.markdown(css(), unsafe_allow_html=True)  # once, here: every page takes its sizes from the same display
sidebar()
st.session_state[SHELL_KEY] = True  # this run came through app.py: the page need not rerun to get its shell
page.run()
