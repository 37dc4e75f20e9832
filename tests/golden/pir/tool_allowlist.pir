stage tool_call
  set S0 on tool.args.account_id as string
    #0 account_id
  rule "support-tool-allowlist" enforce block code "tool_blocked"
    when tool.name not in ["get_account_balance", "lookup_order", "issue_refund"]
  rule "account-id-shape" enforce block code "tool_args_invalid"
    when (tool.name == "get_account_balance" and not (tool.args.account_id as string fullmatches S0#0))
  rule "refund-cap" enforce block code "refund_over_limit"
    when (tool.name == "issue_refund" and tool.args.amount as float > 500.0)
