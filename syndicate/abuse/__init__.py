"""Limits on what strangers can make the service do: sign-ups per client, mailbox, domain and hour; one-use forms."""

from syndicate.abuse._client import client_address
from syndicate.abuse._limits import REFUSAL_WINDOW, SignupLimits
from syndicate.abuse._mailbox import mailbox_key

__all__ = ["REFUSAL_WINDOW", "SignupLimits", "client_address", "mailbox_key"]
