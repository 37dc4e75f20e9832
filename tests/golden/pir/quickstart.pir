stage input
  set S0 on input.messages[*].content
    #0 "ignore previous instructions"i
    #1 /[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}/
    #2 std.secrets.openai_key
  rule "block-prompt-injection" enforce block code "input_blocked"
    when any m in input.messages: (m.role == "user" and m.content matches S0#0)
  rule "redact-email" enforce redact
    when true
    redact S0#1 with "[EMAIL_REDACTED]"
  rule "observe-secrets" observe flag code "secret_in_prompt"
    when any m in input.messages: m.content matches S0#2
stage tool_call
  rule "tool-allowlist" enforce block code "tool_blocked"
    when tool.name not in ["get_account_balance"]
stage output
  set S0 on output.text
    #0 /[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}/
  rule "redact-email" enforce redact [monotone]
    when true
    redact S0#0 with "[EMAIL_REDACTED]"
