stage input
  set S0 on input.messages[*].content
    #0 std.pii.personal_data
  rule "observe-pii-in-prompts" observe flag code "pii_in_prompt"
    when any m in input.messages: m.content matches S0#0
stage output
  set S0 on output.text
    #0 words("acme corp", "globex", "initech")
  rule "observe-competitor-mentions" observe block code "competitor_mention" [monotone]
    when output.text matches S0#0
  rule "observe-truncated-answers" observe flag code "truncated_output" [final-only]
    when output.finish_reason == "length"
