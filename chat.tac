# twistd -y chat.tac: the same service as `twistd parkchat`, configured only
# from PARKCHAT_* environment variables and the TOML file in PARKCHAT_CONFIG
# (the form systemd units and containers use).
from twisted.application.service import Application

from parkchat.tap import Options, makeService

options = Options()
options.parseOptions([])
application = Application("parkchat")
makeService(options).setServiceParent(application)
