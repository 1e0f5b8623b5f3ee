"""A minimal W3C WebDriver client (the HTTP protocol chromedriver speaks), enough to open a page
in headless Chromium, run scripts, click, hover and take screenshots; no Python package needed.
`Browser.start()` returns None when chromium or chromedriver is not installed (Debian: `apt-get
install chromium chromium-driver`)."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self, driver: subprocess.Popen, url: str, session: str):
        self.driver, self.url, self.session = driver, url, session

    @classmethod
    def start(cls, width: int = 1200, height: int = 900) -> "Browser | None":
        binary = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
        driver_exe = shutil.which("chromedriver")
        if binary is None or driver_exe is None:
            return None
        port = _free_port()
        driver = subprocess.Popen([driver_exe, f"--port={port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if _call("GET", url + "/status")["value"]["ready"]:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1"]}}}}
        try:
            session = _call("POST", url + "/session", caps)["value"]["sessionId"]
        except Exception:
            driver.kill()
            raise
        return cls(driver, url, session)

    def _do(self, method: str, path: str, body: dict | None = None):
        return _call(method, f"{self.url}/session/{self.session}{path}", body)["value"]

    def open(self, url: str) -> None:
        self._do("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """The value of a function body `script` (`return …`) called with `args`."""
        return self._do("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> dict:
        return self._do("POST", "/element", {"using": "css selector", "value": css})

    def click(self, element: dict) -> None:
        self._do("POST", f"/element/{element[ELEMENT]}/click", {})

    def hover(self, element: dict) -> None:
        self._do("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse",
                                                   "parameters": {"pointerType": "mouse"},
                                                   "actions": [{"type": "pointerMove", "duration": 0,
                                                                "origin": element, "x": 0, "y": 0}]}]})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._do("GET", "/screenshot"))

    def close(self) -> None:
        try:
            _call("DELETE", f"{self.url}/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(10)


def _call(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
