"""SIP simulator and recorded-call replay."""
