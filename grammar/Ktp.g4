// The .ktp policy language.
//
// This grammar is deliberately permissive where a precise diagnostic is more
// useful than a parse error: stage names, modes, time units and test-clause
// kinds are plain identifiers here and are validated by the checker, which can
// then say "did you mean `output`?" instead of "mismatched input".
//
// Keywords are reserved only where they open a clause or act as operators.
// After a `.` (field access) and as object keys any word is accepted, so
// `tool.args.key` or `{ code: 1 }` work even though `key` and `code` are
// keywords.
grammar Ktp;

file
  : decl* EOF
  ;

decl
  : importDecl
  | patternDecl
  | letDecl
  | policyDecl
  | limitDecl
  | priceDecl
  | testDecl
  | providerDecl
  ;

importDecl
  : IMPORT (dottedName | STRING) (AS IDENT)?
  ;

dottedName
  : IDENT ('.' IDENT)*
  ;

patternDecl
  : PATTERN IDENT '=' expr
  ;

letDecl
  : LET IDENT '=' expr
  ;

policyDecl
  : POLICY STRING '{' policyClause* '}'
  ;

policyClause
  : ON IDENT (',' IDENT)*                      # onClause
  | MODE IDENT                                 # modeClause
  | WHEN expr                                  # whenClause
  | THEN action                                # thenClause
  ;

action
  : BLOCK STRING? (CODE STRING)?               # blockAction
  | FLAG STRING? (CODE STRING)?                # flagAction
  | REDACT redactItem (',' redactItem)*        # redactAction
  ;

redactItem
  : expr WITH STRING
  ;

// `limit` counts requests and tokens in sliding windows; `budget` counts
// spend (and tokens) per calendar period, reserved before the call.
limitDecl
  : (LIMIT | BUDGET) STRING '{' limitClause* '}'
  ;

limitClause
  : KEY expr                                   # keyClause
  | REQUESTS INT PER IDENT                     # requestsClause
  | TOKENS INT PER IDENT                       # tokensClause
  | WHEN expr                                  # limitWhenClause
  // `usd 200 per month`, `reserve 4096`: the word is checked by the checker.
  | IDENT (INT | FLOAT) (PER IDENT)?           # amountClause
  ;

// Model prices for budgets: `price "gpt-4o*" { input 2.50/1M  output 10.00/1M }`.
priceDecl
  : PRICE STRING '{' priceClause* '}'
  ;

priceClause
  : IDENT RATE
  ;

testDecl
  : TEST STRING '{' testClause* '}'
  ;

testClause
  : IDENT expr                                 # givenClause
  | EXPECT expectation                         # expectClause
  ;

expectation
  : ALLOW                                      # expectAllow
  | BLOCK STRING (CODE STRING)?                # expectBlock
  | REDACT STRING                              # expectRedact
  | FLAG STRING                                # expectFlag
  | expr STRING                                # expectValue
  ;

providerDecl
  : PROVIDER IDENT '{' (field (','? field)* ','?)? '}'
  ;

// Keys are names, or strings for keys that are not names (header names
// such as "X-Request-Source").
field
  : (fieldName | STRING) ':' expr
  ;

// Precedence climbs from the bottom of this list to the top: earlier
// alternatives bind tighter. `not` sits below comparison and matching so that
// `not x matches p` means `not (x matches p)`, as it reads aloud.
expr
  : primary                                                        # primaryExpr
  | expr '.' fieldName                                             # fieldExpr
  | expr '[' expr ']'                                              # indexExpr
  | expr AS IDENT                                                  # castExpr
  | '-' expr                                                       # negExpr
  | expr '|' expr                                                  # unionExpr
  | expr '??' expr                                                 # coalesceExpr
  | expr op=('==' | '!=' | '<' | '<=' | '>' | '>=') expr           # compareExpr
  | expr NOT? IN expr                                              # inExpr
  | expr op=(MATCHES | FULLMATCHES | CONTAINS | STARTSWITH | ENDSWITH) expr # matchExpr
  | NOT expr                                                       # notExpr
  | expr AND expr                                                  # andExpr
  | expr OR expr                                                   # orExpr
  | quant=(ANY | ALL) IDENT IN expr ':' expr                        # quantExpr
  ;

primary
  : INT                                                            # intLit
  | FLOAT                                                          # floatLit
  | DURATION                                                       # durationLit
  | STRING                                                         # stringLit
  | ISTRING                                                        # istringLit
  | REGEX                                                          # regexLit
  | (KW_TRUE | KW_FALSE)                                                 # boolLit
  | KW_NULL                                                          # nullLit
  | IDENT '(' (expr (',' expr)*)? ')'                              # callExpr
  | IDENT                                                          # nameExpr
  | '(' expr ')'                                                   # parenExpr
  | '[' (expr (',' expr)* ','?)? ']'                               # listLit
  | '{' (field (',' field)* ','?)? '}'                             # objectLit
  ;

fieldName
  : IDENT | IMPORT | AS | PATTERN | LET | POLICY | ON | MODE | WHEN | THEN
  | BLOCK | FLAG | REDACT | WITH | CODE | LIMIT | KEY | REQUESTS | TOKENS
  | PER | BUDGET | PRICE | TEST | EXPECT | ALLOW | PROVIDER | NOT | IN | AND | OR | ANY | ALL
  | MATCHES | FULLMATCHES | CONTAINS | STARTSWITH | ENDSWITH | KW_TRUE | KW_FALSE
  | KW_NULL
  ;

// ---------------------------------------------------------------- lexer ---

IMPORT: 'import';
AS: 'as';
PATTERN: 'pattern';
LET: 'let';
POLICY: 'policy';
ON: 'on';
MODE: 'mode';
WHEN: 'when';
THEN: 'then';
BLOCK: 'block';
FLAG: 'flag';
REDACT: 'redact';
WITH: 'with';
CODE: 'code';
LIMIT: 'limit';
KEY: 'key';
REQUESTS: 'requests';
TOKENS: 'tokens';
PER: 'per';
BUDGET: 'budget';
PRICE: 'price';
TEST: 'test';
EXPECT: 'expect';
ALLOW: 'allow';
PROVIDER: 'provider';
NOT: 'not';
IN: 'in';
AND: 'and';
OR: 'or';
ANY: 'any';
ALL: 'all';
MATCHES: 'matches';
FULLMATCHES: 'fullmatches';
CONTAINS: 'contains';
STARTSWITH: 'startswith';
ENDSWITH: 'endswith';
KW_TRUE: 'true';
KW_FALSE: 'false';
KW_NULL: 'null';

// Comments come before REGEX so that `/* … */` is never read as a regex.
LINE_COMMENT: '//' ~[\r\n]* -> channel(HIDDEN);
BLOCK_COMMENT: '/*' .*? '*/' -> channel(HIDDEN);

// A price per a number of tokens: `2.50/1M`, `0.30/1K`, `5/1000`. No `/`
// operator exists, so this never shadows an expression.
RATE: [0-9]+ ('.' [0-9]+)? '/' [0-9]+ [KM]?;
DURATION: [0-9]+ ('ms' | 's' | 'm' | 'h');
FLOAT: [0-9]+ '.' [0-9]+;
INT: [0-9]+;
ISTRING: STRING_BODY 'i';
STRING: STRING_BODY;
// A regex literal: at least one character, `/` inside written as `\/`.
REGEX: '/' (~[/\\\r\n*] | '\\' ~[\r\n]) (~[/\\\r\n] | '\\' ~[\r\n])* '/' [a-z]*;
IDENT: [A-Za-z_] [A-Za-z_0-9]*;

WS: [ \t\r\n]+ -> channel(HIDDEN);

// Reported as precise diagnostics by the parser facade rather than as
// generic token-recognition errors.
UNTERMINATED_STRING: '"' (~["\\\r\n] | '\\' ~[\r\n])*;
UNTERMINATED_REGEX: '/' (~[/\\\r\n*] | '\\' ~[\r\n]) (~[/\\\r\n] | '\\' ~[\r\n])*;
// Cannot contain `*/`, so it only wins when the comment is never closed.
UNTERMINATED_COMMENT: '/*' (~'*' | '*'+ ~[*/])* '*'* EOF;
BAD_CHAR: .;

fragment STRING_BODY: '"' (~["\\\r\n] | '\\' ~[\r\n])* '"';
