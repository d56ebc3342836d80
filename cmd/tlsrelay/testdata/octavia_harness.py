#!/usr/bin/python3
"""Octavia's own code (Debian's python3-octavia), run as Octavia runs it, for tlsrelay's
tests. Nothing here reimplements Octavia: each command configures Octavia's options
(oslo.config, from the file CONF) and calls Octavia's classes.

  octavia_harness.py agent CONF
      the amphora agent's REST API: Octavia's Flask app under gunicorn with the options
      octavia.cmd.agent gives it (TLS with agent_server_cert, client certificates
      required from agent_server_ca), less its health sender, log files and syslog
  octavia_harness.py client CONF AMP_ID IP
      the controller's AmphoraAPIClient (it checks the amphora's certificate against
      AMP_ID) asks the amphora for its API version; prints it as JSON
  octavia_harness.py get CONF REF
      the Barbican cert manager reads a certificate; prints its class and PEMs as JSON
  octavia_harness.py store CONF CERT KEY [INTERMEDIATES]
      the Barbican cert manager stores one; prints its ref
"""
import json
import ssl
import sys

from oslo_config import cfg

from octavia.common import config as octavia_config

CONF = cfg.CONF


def configure(path):
    octavia_config.init(['--config-file', path])


def agent():
    from octavia.amphorae.backends.agent.api_server import server
    from octavia.cmd.agent import AmphoraAgent
    from octavia.common import utils

    proto = CONF.amphora_agent.agent_tls_protocol.replace('.', '_')
    options = {  # as octavia.cmd.agent.main, less its log files and syslog
        'bind': utils.ip_port_str(CONF.haproxy_amphora.bind_host, CONF.haproxy_amphora.bind_port),
        'workers': 1,
        'timeout': CONF.amphora_agent.agent_request_read_timeout,
        'certfile': CONF.amphora_agent.agent_server_cert,
        'ca_certs': CONF.amphora_agent.agent_server_ca,
        'cert_reqs': ssl.CERT_REQUIRED,
        'ssl_version': getattr(ssl, "PROTOCOL_%s" % proto),
        'preload_app': True,
    }
    AmphoraAgent(server.Server().app, options).run()


def client(amp_id, ip):
    from octavia.amphorae.drivers.haproxy import rest_api_driver
    from octavia.db import models

    amp = models.Amphora(id=amp_id, lb_network_ip=ip)
    c = rest_api_driver.AmphoraAPIClient0_5()
    # The version discovery call (GET /): what Octavia's controller asks first. The
    # other calls need an amphora's image (haproxy, keepalived, netns) behind them.
    print(json.dumps({'version': c.get_api_version(amp)}))


def cert_manager():
    from octavia.certificates.manager import barbican
    return barbican.BarbicanCertManager()


def context():
    from octavia.common import context as octavia_context
    return octavia_context.Context(project_id='admin')


def get(ref):
    cert = cert_manager().get_cert(context(), ref, check_only=True)
    print(json.dumps({
        'class': type(cert).__module__ + '.' + type(cert).__name__,
        'certificate': _text(cert.get_certificate()),
        'private_key': _text(cert.get_private_key()),
        'intermediates': [_text(i) for i in (cert.get_intermediates() or [])],
    }))


def store(cert, key, intermediates=None):
    def read(path):
        with open(path, 'rb') as f:
            return f.read()
    ref = cert_manager().store_cert(context(), read(cert), read(key),
                                    intermediates=read(intermediates) if intermediates else None,
                                    name='stored by Octavia')
    print(ref)


def _text(b):
    return b.decode() if isinstance(b, bytes) else b


def main(argv):
    command, conf, args = argv[1], argv[2], argv[3:]
    configure(conf)
    {'agent': agent, 'client': client, 'get': get, 'store': store}[command](*args)


if __name__ == '__main__':
    main(sys.argv)
