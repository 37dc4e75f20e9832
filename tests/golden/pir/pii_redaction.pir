stage input
  set S0 on input.messages[*].content
    #0 std.pii.email
    #1 std.pii.phone
    #2 std.pii.us_ssn
    #3 std.pii.credit_card
  rule "redact-pii" enforce redact
    when true
    redact S0#0 with "[EMAIL_REDACTED]"
    redact S0#1 with "[PHONE_REDACTED]"
    redact S0#2 with "[SSN_REDACTED]"
    redact S0#3 with "[CARD_REDACTED]"
stage output
  set S0 on output.text
    #0 std.pii.email
    #1 std.pii.phone
    #2 std.pii.us_ssn
    #3 std.pii.credit_card
  rule "redact-pii" enforce redact [monotone]
    when true
    redact S0#0 with "[EMAIL_REDACTED]"
    redact S0#1 with "[PHONE_REDACTED]"
    redact S0#2 with "[SSN_REDACTED]"
    redact S0#3 with "[CARD_REDACTED]"
  rule "block-pii-dump" enforce block code "output_blocked" [monotone]
    when count(S0#0 in output.text) >= 5
