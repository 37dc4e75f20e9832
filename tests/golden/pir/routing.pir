stage input
  rule "known-model-families" enforce block code "model_not_routed"
    when not (any p in ["gpt-", "o1", "o3", "o4", "claude-"]: input.model startswith p)
