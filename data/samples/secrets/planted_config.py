"""Settings of a made-up service, with one PLANTED FAKE secret or piece of personal data of every type that
flywheel_pipelines.discover.redact must remove. None of these values is real; see README.md."""

# Cloud credentials (AWS's own documentation example key pair, and fakes in the vendors' formats).
AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GOOGLE_MAPS_API_KEY = "AIzaSyPLANTED-fake-GOOGLE-key0000000000"
AZURE_STORAGE = (
    "DefaultEndpointsProtocol=https;AccountName=plantedfake;"
    "AccountKey=PLANTEDfakeAZUREstorageKey000000000000000000000000000000000000000000000000000000000000==;"
)

# Tokens for hosted services.
GITHUB_TOKEN = "ghp_PLANTEDfakeGITHUBtoken00000000000000"
GITHUB_FINE_GRAINED = "github_pat_11PLANTEDFAKE000000000_PLANTEDfakeFINEgrainedGITHUBtokenDoNotUse000000000000000000"
SLACK_BOT_TOKEN = "xoxb-000000000000-0000000000000-PLANTEDfakeSLACKtoken0000"
STRIPE_SECRET = "sk_live_PLANTEDfakeSTRIPEkey0000000000"
GITLAB_TOKEN = "glpat-PLANTEDfakeGITLAB000"
OPENAI_API_KEY = "sk-PLANTEDfakeOPENAI000T3BlbkFJPLANTEDfakeOPENAI000"
PYPI_UPLOAD = "pypi-AgEIcHlwaS5vcmcPLANTEDfakePYPItoken0000000000000000000000000000000000000000000000000000"
SENDGRID = "SG.PLANTEDfakeSENDGRID000.PLANTEDfakeSENDGRIDsecretPart00000000000000"
SQUARE_APP = "sq0csp-PLANTEDfakeSQUAREsecret00000000000000000000"
TWILIO_API = "SKplantedfaketwilio000000000000000"
MAILCHIMP = "plantedfakemailchimp000000000000-us12"
SESSION_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwbGFudGVkLWZha2UtdXNlciIsImlzcyI6InBsYW50ZWQuaW52YWxpZCJ9.PLANTED-fake-SIGNATURE_not-a-real-one-000000"

# A generic secret: only its name and randomness give it away.
webhook_signing_secret = "PLANTED0fake9Zq7Xw2Lm5Rt8Vb3Nc6Kd1"

# Passwords, and URLs that carry one.
DB_PASSWORD = "planted-Passw0rd!"
DATABASE_URL = "postgresql://orders_app:planted-pg-secret@db.corp.example:5432/orders"
ARTIFACTS_INDEX = "https://deploy:planted-basic-secret@artifacts.corp.example/simple/"

DEPLOY_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAplantedFAKEkeyMATERIALdoNOTuse000000000000000000
PLANTEDfakeKEYmaterialONLYforREDACTIONtests00000000000000000000
-----END RSA PRIVATE KEY-----
"""

# Who to call: personal data.
ON_CALL = {
    "owner": "Alice Fakename",
    "email": "alice.fakename@acme-robotics.io",
    "phone": "+1 202-555-0143",
    "build_host": "build-01.corp.example",
    "bastion_ip": "10.20.30.40",
    "bastion_ipv6": "fd12:3456:789a::10",
}

# Left alone: local and documentation addresses, version numbers, dates, a UUID and a digest.
LOCAL_ONLY = ["127.0.0.1", "0.0.0.0", "::1", "192.0.2.10", "198.51.100.7", "203.0.113.99", "user@example.com"]
VERSION = "2.10.3"
RELEASED = "2024-05-06"
REQUEST_ID = "123e4567-e89b-12d3-a456-426614174000"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
