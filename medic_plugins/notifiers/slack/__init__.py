"""The ``slack`` notifier, its health check, and the Slack interactivity integration.

One alert is one Slack message. Its opening is posted with ``chat.postMessage``; the message's
``channel`` and ``ts`` come back as the notifier's state, so the acknowledgement and the resolution
*edit that same message* (``chat.update``) instead of adding noise to the channel. A reminder or an
escalation also edits it, and then posts a reply in its thread, broadcast to the channel, because
an edit alone notifies nobody.

Clicking the message's **Acknowledge** / **Resolve** buttons makes Slack POST a signed
``block_actions`` payload to ``/integrations/slack/actions``, which acknowledges or resolves the
alert as ``slack:<user id>``; the edited message then arrives through the ordinary notification
path, like any other transition.

One module per concept:

- ``client``: ``SlackWebApi``, the few Web API methods Medic calls, every failure mapped to a
  ``DeliveryError`` (``SlackError``) that says whether retrying can help;
- ``blocks``: what a message looks like (headline, Block Kit attachment, buttons, thread replies);
- ``notifier``: ``SlackNotifier``, a target's schema, posting then editing one message per alert,
  and the target test (``check_target``);
- ``health``: ``SlackCheck``, the readiness check (the bot token is accepted);
- ``interactivity``: ``SlackInteractivity``, the signed button callbacks;
- ``plugin``: the hook implementations (the ``slack`` entry point) wiring settings to the above.

Like every plugin, these modules use only Medic's plugin surface (``medic_core.plugins``).
"""
