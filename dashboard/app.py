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
    from dashboard import services
    from ei_keras.errors import EiKerasError

if not st.session_state.get("app_demo_checked"):
    try:
        with st.spinner(f"First start: simulating a small demo dataset "
                        f"({services.DEMO_SAMPLES} runs)…"):
            created = services.ensure_demo_dataset()
        if created is not None:
            st.toast(f"Created the demo dataset {created.name} with "
                     f"{services.DEMO_SAMPLES} simulated runs.", icon=":material/check:")
    except (EiKerasError, OSError) as error:
        st.error(f"Could not create the demo dataset: {error}")
    st.session_state["app_demo_checked"] = True

pages = [
    st.Page("app_pages/data.py", title="Data", icon=":material/science:", url_path="data",
            default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:",
            url_path="train"),
    st.Page("app_pages/analyse.py", title="Analyse", icon=":material/query_stats:",
            url_path="analyse"),
    st.Page("app_pages/live.py", title="Live", icon=":material/monitor_heart:",
            url_path="live"),
]
if services.compare_available():
    pages.append(st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:",
                         url_path="compare"))
page = st.navigation(pages)
st.sidebar.caption(f"Workspace: `{services.workspace()}`  \n"
                   f"(set `{services.WORKSPACE_ENV}` to use another folder)")
try:
    page.run()
except (EiKerasError, ValueError, OSError) as error:
    st.error(f"{error}")
except Exception as error:  # noqa: BLE001 - last resort: a message, never a traceback
    st.error(f"Something went wrong ({type(error).__name__}): {error}")
