# twistd -y chat.tac: the same service as `twistd parkchat`, configured only
# from PARKCHAT_* environment variables and the TOML file in PARKCHAT_CONFIG
# (the form systemd units and containers use).
from twisted.application.service import Application
from twisted.logger import ILogObserver

from twisted.python.usage import UsageError

from parkchat.logs import json_observer
from parkchat.tap import Options, makeService

options = Options()
try:
    options.parseOptions([])
except UsageError as e:
    # twistd reports an exception from a .tac file as "Unhandled Error" with
    # a traceback; a bad setting deserves one line (SystemExit passes through).
    raise SystemExit(f"parkchat: {e}") from None
application = Application("parkchat")
if options.settings is not None and options.settings.log_format == "json":
    # twistd uses this observer unless --logger names another.
    application.setComponent(ILogObserver, json_observer())
makeService(options).setServiceParent(application)
