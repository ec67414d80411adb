<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1">
<context>
    <name>Think2Seg</name>
    <message>
        <location filename="../../think2seg_qgis/areas.py"/>
        <source>The visible map extent cannot be expressed in the CRS of “{name}”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/areas.py"/>
        <source>The visible map does not show “{name}”: pan over it, or choose “Whole layer” as the area.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/areas.py"/>
        <source>Choose a polygon layer whose selected features mark the area to read.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/areas.py"/>
        <source>No feature is selected in “{name}”: select the polygons that mark the area.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/areas.py"/>
        <source>The selected polygons cannot be expressed in the CRS of “{name}”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/areas.py"/>
        <source>The selected polygons do not overlap “{name}”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Health check failed: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>No backend is set up yet: press “Set up backend…” to install one, or choose the folder of an existing backend environment under Backend &gt; Settings &gt; “Backend environment”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Could not start the backend ({python}): {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Starting the local backend…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>The local backend is stopped.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>The local backend exited (code {code}); see its log ({log}):</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Backend loading its models ({seconds:.0f} s)…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>A backend answers at {url} but refuses the token in {path}: another backend may hold the port. Press Stop, then change the Port or the Token file under Backend &gt; Settings.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Starting the local backend ({seconds:.0f} s)…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>The local backend stopped answering: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Downloading the {what} weights: {done:,.0f} of {total:,.0f} MB ({percent:.0f} %)…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_launcher.py"/>
        <source>Downloading the {what} weights: {done:,.0f} MB so far…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>torch publishes no wheel for QGIS's Python {version} on this system</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>QGIS's Python {version} cannot make a virtual environment (no venv/ensurepip)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>QGIS's Python {version} ({python})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Installing uv</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Installing Python {version}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Creating the environment</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Adding pip</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Reusing the installed packages</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Installing torch ({kind})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Installing the Think2Seg backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Installing its dependencies</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Installing SAM2</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Checking the installation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>This copy of the plugin carries no backend package (think2seg-*.whl); install the plugin from its release zip, or point at an existing backend environment instead.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>No Python 3.10 or newer was found to create the backend's environment with: install one from python.org, or point at an existing backend environment instead.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Python: a standalone CPython {version} installed by uv in {folder}, because {why}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Python: {why}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>The backend is installed in {folder}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>could not run {program}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>it exited with code {code}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Setting up the backend failed at “{step}”: {why}. The details are in {log}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>the CPU build</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>the CUDA build</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>PyTorch's index ({url}) cannot be reached, so torch comes from PyPI instead, which may not be {build} (on Linux PyPI's torch is the CUDA build, about 3 GB more; on Windows it is the CPU build). For {build}, let this computer reach download.pytorch.org, or put its wheels in a folder named by PIP_FIND_LINKS.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>On a site without internet, point pip at a mirror (PIP_INDEX_URL) or at a folder of wheels (PIP_FIND_LINKS with PIP_NO_INDEX=1) before starting QGIS.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>pip could not check the certificate of a package index named by its IP address (pip's use of the system's certificates needs a host name)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Name the index by its host name in PIP_INDEX_URL, or set PIP_USE_DEPRECATED=legacy-certs before starting QGIS, then press Install again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>a certificate was refused on the way to the package index (a firewall or proxy that inspects HTTPS, or a mirror with its own certificate)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Give pip your organisation's certificate (PIP_CERT or SSL_CERT_FILE, set before QGIS starts), then press Install again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>the proxy refused the connection or could not be reached</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Check the proxy under QGIS's Settings &gt; Options &gt; Network (host, port, user and password), then press Install again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>pip could not reach the Python package index (no network, or a firewall in between)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>Connect this computer to the internet, or set your proxy under QGIS's Settings &gt; Options &gt; Network, then press Install again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>the package index answered, but with no usable version of a package (a mirror that lacks it, or a page that is no package index, such as a network's log-in page)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>If PIP_INDEX_URL names a mirror, check that it carries torch and the backend's dependencies for this Python, then press Install again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/backend_setup.py"/>
        <source>no Python 3.10 or newer was found next to QGIS</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>the token file is missing or empty; start the backend once (it writes the file) or type the token in the backend settings.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>The backend answered HTTP {status} ({reason}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>The backend at {url} broke off the upload of the image although it answers; try again, or a smaller area (see the backend's log).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>The backend at {url} answered something that is not JSON (is it Think2Seg?).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>The backend accepted the job but gave no job id.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>The backend's models cannot load, so it cannot answer: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>Backend starting: loading the models…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>Backend starting on {device}: loading the models…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>, model {model}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source> (on a CPU an answer takes minutes)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>Backend ready on {device}{extra}: {running} running, {waiting} waiting</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/client.py"/>
        <source>Backend ready on {device}{extra}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Log</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Show the backend's log in the panel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Set up backend…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Install the backend into an environment of its own (or connect to a running one)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Settings</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Local backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Connect to a URL</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>The backend's environment: the venv folder “Set up backend” made, a project folder that has a .venv, or the path of a Python interpreter where the think2seg package is installed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>default: the published Think2Seg weights</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>default: the SAM2 size chosen under Options</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>A SAM2.1 checkpoint file (.pt); empty: the published one of the size under Options</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Backend environment</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Reasoning model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>SAM2 checkpoint</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Device</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Port</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>http://gpu-server:8765</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>or leave empty to read the token file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Keep it in QGIS's password store (QGIS asks for its master password)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Off (default): a typed token is saved in the token file below, readable by you only; the panel and the Processing toolbox both read it. On: QGIS's authentication database keeps it encrypted with its master password, which QGIS asks you to set (first time) or to type (once a session).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>URL</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Token</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Token file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>saved in the token file; type to replace</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>stored in QGIS's authentication database ({id}); type to replace</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>$THINK2SEG_BACKEND_URL sets the URL: {url}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>$THINK2SEG_TOKEN_FILE sets the token file: {path}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>No backend is set up yet: press “Set up backend…” to install one or to connect to one (or choose an existing environment under Settings).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>The Think2Seg backend is not reachable at {url}: check that it runs there and the URL under Backend &gt; Settings.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>The local backend is not running (it exited; see its log): press Start to try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>The local backend is not started: press Start.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>The environment {python} has no Think2Seg backend in it ({error}): press “Set up backend…” to install one, or choose another environment under Settings.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>A backend already answers at {url}; no need to start one.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Backend: not checked yet</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Start</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Start a local backend with the interpreter and models set below</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Stop</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Stop the local backend this panel started</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Check</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/backend_box.py"/>
        <source>Ask the backend whether it is reachable and on what device it runs</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Tile row {row}, column {col}: </source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>e.g. the wetlands that hold water all year</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>What to find, in words; pick one of the last queries from the list</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Query</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Raster layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Area</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Options</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>As the backend started</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>SAM2.1 model size: larger draws finer masks, needs more memory</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source> tokens</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>How long the model may reason before it answers</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source> px</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>The long side of one image the model reads; a larger area is sent at full resolution (up to {tiled} px) and read in tiles of this size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>SAM2 size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Reasoning budget</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Results in</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Image size at most</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Run</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Cancel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>The model's reasoning appears here after a run.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>The backend's log tail appears here when something goes wrong.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Reasoning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Raw answer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Backend log</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Set up a backend first (Backend &gt; “Set up backend…”)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>No backend log yet ({path}): the panel writes one when it starts a backend.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>A run is already going on: wait for it or press Cancel.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Type a query first: what should be found in the raster?</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Choose a raster layer to read (add one to the project first).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Running “{query}” on “{layer}”…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Cancelling…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>The local backend stopped unexpectedly; see its log ({log}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>These are temporary layers (QGIS drops them on quit): save the project, and the next results go to a GeoPackage in its folder.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Nothing matches “{query}” inside the selected polygons.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source> (saved in {path})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>{message} for “{query}” in “{layer}”{where}. {note}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>“{layer}”: {summary}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Visible map extent</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Whole layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Selected features of</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>GeoPackage in the project folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>Temporary layers</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/panel.py"/>
        <source>GeoPackage next to the raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Download: about 1 GB (CPU) or 6 GB (NVIDIA GPU) now, then about 8 GB of model weights when the backend first starts.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Compute</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Use an existing backend environment</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>A venv folder, or a project folder that has a .venv</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>the content of the backend's token file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Install</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Close</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Use it</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Connect</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>No Python environment in {folder}: choose the venv folder (it holds bin/python or Scripts/python.exe), or a project folder that has a .venv.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Starting the backend of {folder}… (the panel shows how it goes)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Step {n} of {count}: {title}…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>The set-up was cancelled; press Install to start it again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Starting it…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Type the backend's address, e.g. http://gpu-server:8765.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Connecting to {url}… (the panel shows the answer)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Set up the Think2Seg backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Think2Seg runs its models (torch, transformers, SAM2) in a Python environment of their own, never inside QGIS. Install one here (a few GB, from PyPI), or connect to a backend that already runs on this machine or a server.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Install a backend on this computer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Connect to a running backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Where the environment goes (default: inside your QGIS profile)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>CPU only (works everywhere, slow)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>NVIDIA GPU (CUDA)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>No NVIDIA GPU found (nvidia-smi): CPU it is.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/dock/setup_dialog.py"/>
        <source>Found {gpu}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>“Device” (Backend settings)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source> at {url}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The Think2Seg backend is not reachable{at}: start one (the Think2Seg panel's Start button, or `think2seg serve` on that machine) and check the algorithm's “Backend URL” parameter.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The Think2Seg backend is not reachable{at}: press Start in the panel's Backend section, or check the URL in its settings.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The Think2Seg backend{at} did not answer in time; it may be busy or stuck (see its log).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The backend refused the token: the token file or the stored token does not match the one the backend uses (see the panel's Backend settings).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>No token to talk to the backend: {message}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The backend is starting and still loading its models; try again in a moment.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The backend ran out of GPU memory: choose a smaller area, a lower reasoning budget or a smaller SAM2 size, or close other programs that use the GPU.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The local backend stopped unexpectedly. {message}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>The backend answered with an error ({code}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>set “Reasoning model” in the panel's Backend settings to DIR</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>set “SAM2 checkpoint” in the panel's Backend settings to DIR/</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>name the size in the checkpoint's file name, e.g. sam2.1_hiera_small.pt:</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>“Reasoning model” (Backend settings)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/errors.py"/>
        <source>“SAM2 checkpoint” (Backend settings)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>The area to read does not overlap the layer “{name}”: pan the map over it or choose “Whole layer”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>GDAL could not read “{name}”: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>GDAL could not read the area of “{name}”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>The layer “{name}” cannot be drawn for export.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>Could not write the drawn image of “{name}”: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>The layer “{name}” has no coordinate reference system, so its answer could not be placed on the map: set its CRS (Layer Properties &gt; Source) and run again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/export.py"/>
        <source>Choose a valid raster layer first.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>Nothing matches “{query}” in “{layer}”: the model gave no usable answer (see its raw answer in the panel).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>Nothing matches “{query}” in “{layer}”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>The backend returned a mask geometry that cannot be read.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>Masks drawn with SAM2 {used}: the backend did not use the size asked for ({requested}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{query} — masks</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{query} — prompt points</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{query} — prompt boxes</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>Think2Seg answer to “{query}” on “{layer}”.

Reasoning:
{reasoning}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{area} ha</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{area} m²</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>1 feature found, {area} in all.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{n} features found, {area} in all.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>1 feature, {area} in all</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>{n} features, {area} in all</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source> (after your edits)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>Could not write the results to {path}: {message}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/layers.py"/>
        <source>The results written to {path} could not be opened again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/plugin.py"/>
        <source>Think2Seg reasoning segmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/plugin.py"/>
        <source>Think2Seg: find what a sentence describes in a raster (opens the panel)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Masks</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Prompt points</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Prompt boxes</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Reasoning segmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Segmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>&lt;p&gt;Finds what a query describes in a raster (for example &lt;i&gt;the wetlands that hold water all year&lt;/i&gt;) and returns the masks as polygons, with the prompt points and boxes the model chose and its reasoning.&lt;/p&gt;&lt;p&gt;The area (the whole layer by default) is sent to the Think2Seg backend set in the Think2Seg panel (&lt;b&gt;Raster &amp;gt; Think2Seg&lt;/b&gt;), with the panel's token, or to the one the &lt;b&gt;Backend URL&lt;/b&gt; advanced parameter names. Areas larger than the image size bound are read at full resolution and tiled by the backend. &lt;b&gt;Strict answer format&lt;/b&gt; holds the model's answer to its expected shape, as the panel's box of that name does.&lt;/p&gt;&lt;p&gt;Outputs are in the raster's CRS. Every feature carries the query, its number in the answer (&lt;i&gt;instance&lt;/i&gt;), its area (&lt;i&gt;area_m2&lt;/i&gt;, square metres, geodesic for longitude/latitude), the model names, the SAM2 size used, the source layer and the time: the same layers and attributes as the panel's.&lt;/p&gt;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>The raster to read.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Query (what to find)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>What to find, in words: an object, or a description that needs reasoning.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Area to read (default: the whole layer)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Only this part of the raster is read; empty: the whole layer.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>As the backend started (default)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>The SAM2.1 model that draws the masks: larger is finer and needs more memory.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Reasoning budget (tokens)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>How long the model may reason before it answers.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Backend URL</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>The Think2Seg backend to use, e.g. http://127.0.0.1:8765; empty: the panel's setting.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Image size bound (pixels, long side)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>The largest image the model reads at once; larger areas are tiled by the backend. Empty: the panel's “Image size at most”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Choose a raster layer to segment.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Type a query: what should be found in the raster?</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Backend: {url}; image size bound: {size} px</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>The backend read the area in tiles (larger than the image size bound).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Reasoning: {text}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>SAM2 size used: {size}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Strict answer format: the backend held the answer to its expected shape.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Tiny (fastest, coarsest)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Small</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Base+ (finer)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/processing/segment_algorithm.py"/>
        <source>Large (finest, most memory)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>user: positive</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>user: negative</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>user</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Think2Seg: refine</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Unexpected error while refining: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Could not apply the refined mask: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>This answer has no feature {instance}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>The backend no longer keeps the image of this result (newer answers took its place in its store, or it runs with another work folder), so it cannot be refined: run the query again, then refine the new result.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Added by the user (refine).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Refine</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Refine a feature of the selected result with clicks ({shortcut}): left click adds, right click removes, a drag redraws the box</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Undo</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Reset</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Done</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Step back one edit</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Back to the model's prompts and polygon</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Select a layer of a Think2Seg result (its masks, points or boxes) to refine it.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Left click: add; right click: remove; drag: redraw the box.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Feature {instance}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>New feature</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/refine_tool.py"/>
        <source>Feature {instance} updated.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Reading the image and reasoning…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Running…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Waiting for the backend…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>The segmentation was cancelled; nothing was added to the project.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Uploading the image</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>The job failed.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Strict answer format</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Holds the model's answer to the expected JSON shape (the reasoning stays free). Off by default: not yet measured with the published weights.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Tile {n} of {total} done…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Reading the area in {total} tiles…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>{n} of {total} tiles already done…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Reasoning on tile {n} of {total}…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Reasoning on tiles {first}–{last} of {total}…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>tokens written: {n}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Reasoning… tokens written: {n} (at most {budget})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Merging the tiles’ answers…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/segmentation.py"/>
        <source>Waiting for the backend (another run goes first)…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/settings.py"/>
        <source>Think2Seg backend token</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/settings.py"/>
        <source>QGIS could not store the token in its authentication database (is a master password set?)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>Unexpected error: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>Unexpected error in the Think2Seg task: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>The task failed.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>Could not show the result: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>Reading “{layer}”…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>Sending {w} × {h} px to the backend, which reads it in {tile} px tiles…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../think2seg_qgis/task.py"/>
        <source>Sending {w} × {h} px to the backend…</source>
        <translation type="unfinished"></translation>
    </message>
</context>
</TS>
