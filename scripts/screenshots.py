"""Open notebooks in a real JupyterLab in headless Chromium, Run All, check and photograph what shows.

Used by ``tests/test_browser.py`` (one notebook on a small runs directory the test makes) and run by
hand to refresh the README's screenshots from the published smoke runs::

    .venv/bin/python scripts/screenshots.py            # -> figures/jupyterlab/figure1.png, figure4.png, explorer.png
    .venv/bin/python scripts/screenshots.py --profile cifar-cpu   # -> figures/jupyterlab/cifar-cpu/...
    .venv/bin/python scripts/screenshots.py --profile cifar       # -> figures/jupyterlab/cifar/...

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``) and
``selenium`` (a dev dependency). JupyterLab listens on 127.0.0.1 only, on a free port, with its settings,
workspace and runtime files in a temporary folder; the notebook is a parameterized copy (papermill's
injected-parameters cell, as ``reproduce`` makes) in a temporary root, so the repository is not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("chromedriver",)
# Without the background-networking flags headless Chromium opens connections that the sandboxed
# machines refuse in bulk; a fresh profile per run keeps earlier sessions out.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
# JupyterLab user settings for a quiet, fully rendered page: every cell in the DOM (no windowing),
# no news or update toasts over the screenshot.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def missing_browser() -> str | None:
    """Why the browser check cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is a dev dependency)"
    if not any(shutil.which(b) for b in CHROMIUM) or not any(shutil.which(d) for d in CHROMEDRIVER):
        return ("Chromium or its driver is absent; install them with "
                "`apt-get install -y chromium chromium-driver` (Debian/Ubuntu) to enable this check")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kernel_name() -> str:
    """The notebooks' kernel ``lt-paper`` when it is registered (``.ci/setup`` does), else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "lt-paper" if "lt-paper" in KernelSpecManager().find_kernel_specs() else "python3"


def parameterized_copy(notebook: str, parameters: dict, folder: Path) -> Path:
    """``notebooks/<notebook>.ipynb`` with papermill's injected-parameters cell, written into ``folder``."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(REPO / "notebooks" / f"{notebook}.ipynb")), parameters)
    nb.metadata.kernelspec = {"name": _kernel_name(), "display_name": "lt-paper", "language": "python"}
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
    path = folder / f"{notebook}.ipynb"
    nbformat.write(nb, path)
    return path


class JupyterLabInChromium:
    """A JupyterLab server on 127.0.0.1 serving ``root`` and a headless Chromium driving it."""

    def __init__(self, root: Path, env: dict | None = None):
        self.root, self.port, self.work = Path(root), _free_port(), Path(tempfile.mkdtemp(prefix="lab-"))
        for name, values in LAB_SETTINGS.items():
            path = self.work / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.env = dict(os.environ, **(env or {}), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
                        JUPYTER_RUNTIME_DIR=str(self.work / "runtime"),
                        JUPYTERLAB_SETTINGS_DIR=str(self.work / "settings"),
                        JUPYTERLAB_WORKSPACES_DIR=str(self.work / "workspaces"))
        self.server = self.driver = None

    def __enter__(self) -> "JupyterLabInChromium":
        jupyter = Path(sys.executable).with_name("jupyter")
        cmd = [str(jupyter), "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True"]
        log = self.work / "jupyterlab.log"  # a file, not a pipe: an unread pipe would block the server
        with log.open("w") as sink:
            self.server = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status", timeout=5)
                break
            except OSError:
                if self.server.poll() is not None or time.time() > deadline:
                    tail = log.read_text()[-2000:]
                    self.__exit__()
                    raise RuntimeError(f"JupyterLab did not start within 60 s: {tail}")
                time.sleep(0.5)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = next(shutil.which(b) for b in CHROMIUM if shutil.which(b))
        for flag in CHROMIUM_FLAGS + (f"--user-data-dir={self.work / 'chromium'}",):
            options.add_argument(flag)
        service = Service(next(shutil.which(d) for d in CHROMEDRIVER if shutil.which(d)))
        self.driver = webdriver.Chrome(service=service, options=options)
        # Newer headless Chromium gives the page no focus: JupyterLab then has no current widget, so
        # Run All (which acts on the current notebook) would do nothing. Emulating focus restores it.
        self.driver.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": True})
        return self

    def __exit__(self, *exc) -> None:
        if self.driver is not None:
            self.driver.quit()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def _js(self, script: str):
        return self.driver.execute_script(script)

    def _wait(self, what: str, script: str, timeout: float):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self._js(script)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab: {what} not within {timeout:.0f} s")

    def run_all(self, notebook: Path, timeout: float = 90) -> dict:
        """Open ``notebook`` (a file under ``root``), Run All, wait until every cell ran.

        Returns the seconds Run All took (``run_all_s``, polled every 0.5 s) and what the page
        shows: ``images`` (rendered <img> in output areas), ``errors`` (error
        outputs), ``stderr`` (stderr stream outputs), ``cells`` (code cells), ``executed`` (of them).
        """
        rel = notebook.relative_to(self.root).as_posix()
        self.driver.get(f"http://127.0.0.1:{self.port}/lab/tree/{rel}?reset")
        panel = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
        self._wait("the notebook to open with an idle kernel",
                   f"const w = {panel}; return !!(w && w.sessionContext && w.sessionContext.session"
                   f" && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'"
                   f" && w.content && w.content.widgets.length > 0);", 60)
        started = time.perf_counter()
        self._js("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        cells = ("Array.from(window.jupyterapp.shell.currentWidget.content.widgets)"
                 ".filter(c => c.model.type === 'code')")
        # done when every cell ran, or when one failed (Run All stops there, leaving the rest unrun)
        self._wait("Run All to finish",
                   f"const cells = {cells}; const k = window.jupyterapp.shell.currentWidget.sessionContext;"
                   f" return k.session.kernel.status === 'idle' && (cells.every(c => c.model.executionCount"
                   f" !== null) || cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error')));",
                   timeout)
        run_all_s = round(time.perf_counter() - started, 1)
        time.sleep(1.0)  # let the last outputs render
        return {"run_all_s": run_all_s, **self._js(
            f"const cells = {cells}; const outs = cells.flatMap(c => c.model.outputs.toJSON());"
            " return {cells: cells.length,"
            " executed: cells.filter(c => c.model.executionCount !== null).length,"
            " images: document.querySelectorAll('.jp-OutputArea-output img').length,"
            " nothing_yet: document.body.innerText.includes('Nothing to show yet'),"
            " errors: outs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),"
            " stderr: outs.filter(o => o.name === 'stderr').map(o => o.text)};")}

    def choose(self, widget_class: str, option: str, changed: str, timeout: float = 30) -> float:
        """Pick ``option`` (its visible text) in the ipywidgets dropdown carrying ``widget_class``, and wait
        until the JavaScript expression ``changed`` is true (the kernel answered and the page redrew).
        Returns the seconds that took, polled every 0.1 s."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        started = time.perf_counter()
        Select(self.driver.find_element(By.CSS_SELECTOR, f".{widget_class} select")).select_by_visible_text(option)
        deadline = time.time() + timeout
        while not self._js(f"return !!({changed});"):
            if time.time() > deadline:
                raise TimeoutError(f"JupyterLab: choosing {option!r} in .{widget_class} changed nothing "
                                   f"within {timeout:.0f} s")
            time.sleep(0.1)
        return round(time.perf_counter() - started, 2)

    def screenshot(self, path: Path, image: int = 0, at: str | None = None, text: str | None = None) -> Path:
        """A PNG of the browser window scrolled to the cell of the ``image``-th output image (its code,
        the figure's title and the figure at the top), to the first element matching the CSS selector
        ``at``, or to the first output showing ``text``."""
        target = (f"document.querySelector('{at}')" if at else
                  f"Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                  f".find(o => o.innerText.includes({json.dumps(text)}))" if text else
                  f"document.querySelectorAll('.jp-OutputArea-output img')[{image}]")
        self._js(f"const t = {target}; if (t) t.closest('.jp-Cell').scrollIntoView({{block: 'start'}});")
        time.sleep(0.5)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


# profile -> the name it is published under (results/<name>/runs)
SCREENSHOT_PROFILES = {"smoke": "smoke", "cifar-cpu": "cifar10_lt_if100_cpu", "cifar": "cifar10_lt_if100"}


# the explorer's choices before its screenshot: (widget class, option), one after another
EXPLORER_CHOICES = {"cifar-cpu": [("lt-class", "ship (83 train images)"), ("lt-run-b", "MoE-3, seed 0")]}


def profile_parameters(profile: str, notebook: str) -> dict:
    """The notebook parameters ``reproduce --profile`` gives ``notebook`` (they name the runs to read),
    the profile's name among them, as reproduce sets it (the reading notes speak of it first)."""
    from lt_paper.workflows.reproduce import jobs_for

    return next(dict(params, profile=profile) for nb, _, params in jobs_for(profile) if nb == notebook)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", choices=SCREENSHOT_PROFILES,
                        help="whose published runs, with that profile's notebook parameters (default smoke)")
    parser.add_argument("--runs-dir", default=None,
                        help="finished runs to read (train=False; default: the profile's published runs)")
    parser.add_argument("--out", default=None, help="folder for the PNGs (default: figures/jupyterlab, "
                        "figures/jupyterlab/<profile> for another profile than smoke)")
    parser.add_argument("--root", default=None, help="project root the notebook's relative paths resolve "
                        "against (LT_PAPER_ROOT; default: this repository)")
    args = parser.parse_args(argv)
    publication = SCREENSHOT_PROFILES[args.profile]
    runs_dir = args.runs_dir or f"results/{publication}/runs"
    default_out = REPO / "figures" / "jupyterlab" / ("" if args.profile == "smoke" else args.profile)
    out = Path(args.out) if args.out else default_out
    why = missing_browser()
    if why:
        print(f"cannot take screenshots: {why}", file=sys.stderr)
        return 2
    env = {"LT_PAPER_ROOT": str(Path(args.root).resolve())} if args.root else {}
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        tmp = Path(tmp)
        with JupyterLabInChromium(tmp, env) as lab:
            for notebook, name in (("figure1_hard_samples", "figure1"),
                                   ("figure4_router_weights", "figure4")):
                params = dict(profile_parameters(args.profile, notebook), runs_dir=runs_dir, train=False,
                              output_dir=str(tmp / "outputs" / notebook))
                shown = lab.run_all(parameterized_copy(notebook, params, tmp))
                # no figure is a failure unless the notebook says its rows have not trained (the cifar
                # profile's Figure 4 beside its single-network runs)
                if shown["errors"] or not (shown["images"] or shown["nothing_yet"]):
                    print(f"{notebook}: {shown}", file=sys.stderr)
                    return 1
                print(lab.screenshot(out / f"{name}.png", text=None if shown["images"] else "Nothing to show yet"),
                      shown)
            params = dict(profile_parameters(args.profile, "explore_hard_samples"), runs_dir=runs_dir, train=False,
                          output_dir=str(tmp / "outputs" / "explore_hard_samples"))
            shown = lab.run_all(parameterized_copy("explore_hard_samples", params, tmp), timeout=300)
            if shown["errors"]:
                print(f"explore_hard_samples: {shown}", file=sys.stderr)
                return 1
            for widget, option in EXPLORER_CHOICES.get(args.profile, ()):  # as a student would use it
                took = lab.choose(widget, option, f"document.querySelector('.lt-summary-pane .lt-summary')"
                                  f".textContent.includes({json.dumps(option.split(' (')[0])})")
                print(f"explorer: {option!r} answered in {took} s")
            print(lab.screenshot(out / "explorer.png", at=".lt-summary-pane"), shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
