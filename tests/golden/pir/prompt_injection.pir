stage input
  set S0 on input.messages[*].content
    #0 std.injection.attack | exfiltration
    #1 std.injection.ignore_instructions
  rule "injection-guard" enforce block code "input_blocked"
    when any m in input.messages: (m.role == "user" and m.content matches S0#0)
  rule "tool-result-injection" enforce block code "indirect_injection"
    when any m in input.messages: (m.role == "tool" and m.content matches S0#1)
