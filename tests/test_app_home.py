from streamlit.testing.v1 import AppTest

from conftest import ROOT


def test_home_page_renders_and_simulates():
    app = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=60)
    app.run()
    assert not app.exception
    assert "synthetic cohort" in app.warning[0].value
    app.slider[0].set_value(20)
    app.button[0].click()
    app.run()
    assert not app.exception
    assert any("FINDINGS" in t.value or "no radiology report" in t.value for t in app.text)
