"""ei_keras dashboard entry point: ``streamlit run dashboard/app.py``.

Routes to the pages in ``app_pages/`` and prepares what every page needs: the package on
the import path and, on a first open with an empty workspace, a small demo dataset.
"""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="ei_keras", page_icon=":material/biotech:", layout="wide")

with st.spinner("Loading ei_keras (Keras and the simulator)…"):
    from dashboard import cache, workspace
    from ei_keras.errors import EiKerasError

if not st.session_state.get("app_demo_checked"):
    try:
        with st.spinner(f"First start: simulating a small demo dataset "
                        f"({cache.DEMO_SAMPLES} runs)…"):
            created = cache.ensure_demo_dataset()
        if created is not None:
            st.toast(f"Created the demo dataset {created.name} with "
                     f"{cache.DEMO_SAMPLES} simulated runs.", icon=":material/check:")
    except (EiKerasError, OSError) as error:
        st.error(f"Could not create the demo dataset: {error}")
    st.session_state["app_demo_checked"] = True

pages = [
    st.Page("app_pages/data.py", title="Data", icon=":material/science:", url_path="data"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:",
            url_path="train"),
    st.Page("app_pages/analyse.py", title="Analyse", icon=":material/query_stats:",
            url_path="analyse"),
    st.Page("app_pages/live.py", title="Live", icon=":material/monitor_heart:",
            url_path="live"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:",
            url_path="compare"),
]
# Streamlit serves its default page at "/" only: a start page that opens Data keeps every
# page reachable by its own URL (/data too), and the sidebar links the pages themselves.
start = st.Page(lambda: st.switch_page(pages[0]), title="ei_keras", url_path="start",
                default=True)
page = st.navigation([start] + pages, position="hidden")
for linked in pages:
    st.sidebar.page_link(linked)
st.sidebar.caption(f"Workspace: `{workspace.workspace()}`  \n"
                   f"(set `{workspace.WORKSPACE_ENV}` to use another folder)")
try:
    page.run()
except (EiKerasError, ValueError, OSError) as error:
    st.error(f"{error}")
except Exception as error:  # noqa: BLE001 - last resort: a message, never a traceback
    st.error(f"Something went wrong ({type(error).__name__}): {error}")
