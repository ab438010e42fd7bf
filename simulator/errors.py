"""Twilio-shaped REST errors (legacy 2010 format) and the error catalogue the simulator uses."""
from __future__ import annotations

from dataclasses import dataclass

# code -> (default HTTP status, default message). Messages follow Twilio's wording where known.
CATALOGUE: dict[int, tuple[int, str]] = {
    20001: (400, "Invalid parameter"),
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21201: (400, "No 'To' number is specified"),
    21205: (400, "Url is not a valid URL"),
    21210: (400, "The source phone number provided, {value}, is not yet verified for your account. "
                 "You may only make calls from phone numbers that you've verified or purchased from Twilio."),
    21211: (400, "Invalid 'To' Phone Number: {value}"),
    21212: (400, "Invalid 'From' Phone Number: {value}"),
    21213: (400, "No 'From' number is specified"),
    21214: (400, "'To' phone number cannot be reached"),
    21215: (400, "Geo Permission configuration is not permitting call"),
    21216: (400, "Call blocked by Twilio blocklist"),
    21218: (400, "Invalid ApplicationSid"),
    21219: (400, "'To' phone number not verified"),
    21220: (400, "Call is not in-progress. Cannot redirect."),
    21266: (400, "'To' and 'From' number cannot be the same: {value}"),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {value}"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided ({value}) is not a valid message-capable Twilio phone number "
                 "for this destination."),
    21608: (400, "The number {value} is unverified. Trial accounts may only send messages to verified numbers."),
    21609: (400, "Invalid 'StatusCallback': {value}"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21612: (400, "The 'To' phone number: {value}, is not currently reachable using the 'From' phone number via SMS."),
    21614: (400, "'To' number {value} is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21620: (400, "Invalid media URL(s)"),
    21623: (400, "Number of media files exceeds allowed limit"),
    21624: (400, "Invalid validity period value"),
    21635: (400, "'To' number cannot receive SMS: it is a landline"),
    21701: (400, "The Messaging Service Sid {value} is invalid."),
}

# HTTP statuses that, used as a "code", mean "answer with a plain HTML server fault".
HTML_FAULT_STATUSES = frozenset({500, 502, 503, 504})


@dataclass
class TwilioError(Exception):
    """A REST error to answer with Twilio's JSON error body."""

    code: int
    message: str = ""
    status: int = 400

    def __post_init__(self) -> None:
        """Initialise the Exception base so str() shows the message."""
        Exception.__init__(self, f"{self.code}: {self.message}")

    def body(self) -> dict[str, object]:
        """The legacy 2010 JSON error body."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def twilio_error(code: int, value: str = "", status: int | None = None, message: str | None = None) -> TwilioError:
    """Build a TwilioError from the catalogue, filling {value} into the message."""
    default_status, template = CATALOGUE.get(code, (400, "Error {code}"))
    text = message if message is not None else template.replace("{value}", value).replace("{code}", str(code))
    return TwilioError(code=code, message=text, status=status or default_status)


def http_status_for(code: int) -> int:
    """Default HTTP status for an error code used by a handset behaviour."""
    if code in HTML_FAULT_STATUSES:
        return code
    return CATALOGUE.get(code, (400, ""))[0]
