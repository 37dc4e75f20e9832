stage input
  rule "require-request-source" observe flag code "missing_request_source"
    when header("X-Request-Source") ?? "" == ""
