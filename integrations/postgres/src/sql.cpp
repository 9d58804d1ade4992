#include "sql.hpp"

#include <cstdint>
#include <cstdio>
#include <utility>

#include "emissions/status.hpp"

namespace emissions::postgres::detail {

namespace {

std::vector<std::string_view> split_table(std::string_view table) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = table.find('.', start);
    parts.push_back(table.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string quote_identifier(std::string_view part) {
  std::string out = "\"";
  for (const char c : part) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// ARRAY['a','b']::uuid[]: claim ids as literals.
std::string claims_array(const std::vector<std::string>& claims) {
  std::string out = "ARRAY[";
  for (std::size_t i = 0; i < claims.size(); ++i) {
    if (i > 0) out += ',';
    out += quote_literal(claims[i]);
  }
  return out + "]::uuid[]";
}

// '{1,2,3}'::bigint[]: the rows, by primary key (index lookups, whatever the table's size).
std::string seqs_array(const std::vector<std::int64_t>& seqs) {
  std::string out = "'{";
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(seqs[i]);
  }
  return out + "}'::bigint[]";
}

std::string lease_interval(std::chrono::milliseconds lease) {
  return "interval '1 millisecond' * " + std::to_string(lease.count());
}

// The longest prefix of `text` of at most `max` bytes that does not split a UTF-8 character.
std::string_view utf8_prefix(std::string_view text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t keep = max;
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0U) == 0x80U)
    --keep;  // text[keep] would start the cut: a continuation byte
  return text.substr(0, keep);
}

// `base` + `suffix` when that fits PostgreSQL's 63-byte identifiers; otherwise the first 48
// bytes of `base` (cut at a UTF-8 character boundary), '_', 8 hex digits of a hash of the
// whole `base`, then `suffix` (at most 10 bytes): never cut by the server, and distinct for
// two long names that share a prefix.
std::string fitted_name(std::string_view base, std::string_view suffix) {
  constexpr std::size_t kMaxIdentifier = 63;  // NAMEDATALEN - 1, in bytes
  if (base.size() + suffix.size() <= kMaxIdentifier) return std::string(base) + std::string(suffix);
  // FNV-1a: stable across versions and platforms, so schema_sql() and stage() of any two
  // versions agree on the name.
  std::uint32_t hash = 2166136261U;
  for (const char c : base) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 16777619U;
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(hash));
  return std::string(utf8_prefix(base, 48)) + "_" + hex + std::string(suffix);
}

// The names the server may make of `name` (UTF-8) when it is longer than 63 bytes of the
// database's encoding, which is not known here: every prefix of whole characters that some
// encoding could cut it to (truncate_identifier), i.e. at most 63 bytes if each non-ASCII
// character took 1 byte, and over 63 with the next character if each took 4 (ASCII takes 1
// in every server encoding). Shortest first; a name no encoding cuts gives none. Only for
// reading the server's messages: SQL that must find a cut name asks the server to cut it (a
// text cast to `name`), in whatever encoding the database has.
std::vector<std::string> server_cut_names(std::string_view name) {
  constexpr std::size_t kMaxIdentifier = 63;  // NAMEDATALEN - 1, in bytes
  std::vector<std::string> out;
  std::size_t ascii = 0;      // ASCII characters of name[0, at)
  std::size_t non_ascii = 0;  // other characters of name[0, at)
  for (std::size_t at = 0; at < name.size(); ++at) {
    const auto byte = static_cast<unsigned char>(name[at]);
    if ((byte & 0xC0U) == 0x80U) continue;  // a continuation byte: not a character boundary
    const std::size_t next = byte < 0x80U ? 1 : 4;
    if (at > 0 && ascii + non_ascii <= kMaxIdentifier &&
        ascii + 4 * non_ascii + next > kMaxIdentifier) {
      out.emplace_back(name.substr(0, at));
    }
    if (byte < 0x80U) {
      ++ascii;
    } else {
      ++non_ascii;
    }
  }
  return out;
}

// The staging function's name, unquoted: {schema (empty when the table is unqualified), name}.
std::pair<std::string, std::string> stage_function_parts(std::string_view table) {
  (void)quote_table(table, "OutboxOptions::table");  // validates every part
  const std::size_t dot = table.rfind('.');
  return {dot == std::string_view::npos ? std::string() : std::string(table.substr(0, dot)),
          fitted_name(table_base(table), "_stage")};
}

// SQL for the text "<schema>.<function>(jsonb, text)" naming the staging function in the
// schema where CREATE FUNCTION puts it: the table's schema when it is qualified, otherwise
// the current schema (not wherever the search_path finds a function of that name first).
std::string stage_function_in_its_schema(std::string_view table) {
  const auto [schema, name] = stage_function_parts(table);
  const std::string schema_sql_text = schema.empty()
                                          ? std::string("quote_ident(current_schema())")
                                          : escape_string_literal(quote_identifier(schema));
  return schema_sql_text + " || " +
         escape_string_literal("." + quote_identifier(name) + "(jsonb, text)");
}

// SQL for the text "<schema>.<name>" (`name` unquoted) naming a relation of the schema the
// DDL acts in: the schema written in `table`, or, unqualified, the current schema, where
// CREATE TABLE IF NOT EXISTS looks for the table and makes it (not the schema of a table of
// that name later in the search_path).
std::string in_ddl_schema(std::string_view table, std::string_view name) {
  (void)quote_table(table, "OutboxOptions::table");  // validates every part
  const std::size_t dot = table.rfind('.');
  const std::string qualified_name = escape_string_literal("." + quote_identifier(name));
  if (dot != std::string_view::npos) {
    return escape_string_literal(quote_identifier(table.substr(0, dot))) + " || " + qualified_name;
  }
  return "quote_ident(current_schema()) || " + qualified_name;
}

// SQL conditions on `i` (pg_index), `c` (its pg_class row) and `am` (its pg_am row) that hold
// for the key index as schema_sql() makes it, compared by structure (not by the text of its
// definition, which storage parameters such as a fill factor change): a btree, not unique,
// of the column ordering_key alone, ascending, with the predicate "ordering_key IS NOT NULL".
std::string key_index_structure() {
  // The column's own collation and its type's default btree operator class: an index with
  // another (COLLATE "POSIX", text_pattern_ops) does not serve the claim's key lookup.
  return "am.amname = 'btree' AND NOT i.indisunique AND i.indisvalid AND i.indnatts = 1\n"
         "      AND i.indexprs IS NULL AND i.indoption[0] = 0 AND EXISTS (SELECT FROM "
         "pg_attribute a\n"
         "        WHERE a.attrelid = i.indrelid AND a.attname = 'ordering_key' AND NOT "
         "a.attisdropped\n"
         "        AND a.attnum = i.indkey[0] AND i.indcollation[0] = a.attcollation\n"
         "        AND i.indclass[0] = (SELECT opc.oid FROM pg_opclass opc WHERE opc.opcmethod = "
         "am.oid\n"
         "          AND opc.opcdefault AND opc.opcintype = a.atttypid))\n"
         "      AND pg_get_expr(i.indpred, i.indrelid) = '(ordering_key IS NOT NULL)'";
}

}  // namespace

std::string quote_table(std::string_view table, std::string_view field) {
  const std::vector<std::string_view> parts = split_table(table);
  if (parts.size() > 2) {
    throw ConfigError(std::string(field) + " must be 'table' or 'schema.table' (got '" +
                      std::string(table) + "')");
  }
  std::string out;
  for (const std::string_view part : parts) {
    if (part.empty() || part.find('\0') != std::string_view::npos) {
      throw ConfigError(std::string(field) +
                        " must be a non-empty table name, optionally schema-qualified, without "
                        "NUL characters (got '" +
                        std::string(table) + "')");
    }
    if (!out.empty()) out += '.';
    out += quote_identifier(part);
  }
  return out;
}

std::string_view table_base(std::string_view table) {
  const std::size_t dot = table.rfind('.');
  return dot == std::string_view::npos ? table : table.substr(dot + 1);
}

std::string quote_literal(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

std::string escape_string_literal(std::string_view text) {
  std::string out = "E'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') out += c;
    out += c;
  }
  out += '\'';
  return out;
}

std::string listen_statement(std::string_view channel) {
  // The relay's own commits (claims, renewals, deletes) do not wait for the WAL flush: a
  // server crash may then forget a claim or a delete, which only means those rows are
  // published again (at least once), and each claim stops costing an fsync.
  // quote_literal doubles quotes only: that is exact with standard_conforming_strings on
  // (the default since 9.1), which a server, role or conninfo setting could turn off.
  return "SET standard_conforming_strings = on; SET synchronous_commit = off; LISTEN " +
         quote_identifier(channel);
}

std::string schema_statements(std::string_view table) {
  const std::string t = quote_table(table, "OutboxOptions::table");
  const std::string base(table_base(table));
  const std::string fn = stage_function(table);
  // The claim query reads unclaimed or expired rows in seq order (the primary key) and looks
  // up the rows of a key (key); deletes, renewals and releases find rows by seq. No index
  // holds a column a claim writes, so a claim's UPDATE can be HOT (no index entries), and
  // the fill factor leaves room on each page for the claimed versions of its rows.
  std::string ddl = "CREATE TABLE IF NOT EXISTS " + t +
                    " (\n"
                    "  seq bigserial PRIMARY KEY,\n"
                    "  id uuid NOT NULL UNIQUE,\n"
                    "  name text NOT NULL,\n"
                    "  payload jsonb NOT NULL,\n"
                    "  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,\n"
                    "  emitted_at timestamptz NOT NULL,\n"
                    "  ordering_key text,\n"
                    "  claimed_by text,\n"
                    "  claim_id uuid,\n"
                    "  claimed_until timestamptz,\n"
                    "  claims integer NOT NULL DEFAULT 0\n"
                    ") WITH (fillfactor = 50);\n";
  // Dollar quoting (whatever standard_conforming_strings says), with a tag that the table's
  // and the function's names, the only text in what we quote that is not ours, do not
  // contain (escaping text, which doubles quotes and backslashes only, cannot make it).
  std::string tag = "$emissions$";
  for (int n = 1; t.find(tag) != std::string::npos || fn.find(tag) != std::string::npos; ++n)
    tag = "$emissions" + std::to_string(n) + "$";
  // The table where the DDL acts, as SQL for its quoted name (see in_ddl_schema).
  const std::string table_here = "to_regclass(" + in_ddl_schema(table, base) + ")";
  // The key index is "<table>_key", or, when that exceeds 63 bytes, a name with a hash
  // (fitted_name): the server would cut it, and the cut name could be another table's (a
  // 63-byte table's is the table itself), so that IF NOT EXISTS skipped the index or a
  // later CREATE TABLE IF NOT EXISTS found this index and skipped its table. An earlier
  // schema_sql() gave a long table's index the cut name: that index (on this table, with the
  // key index's definition, nothing else) is renamed, so that the table does not get a
  // second one; if the hashed one exists too (an older schema_sql() ran after a newer one,
  // in a rolling deploy), the cut one is a duplicate and is dropped.
  // The cut name is the server's own cut (a cast to `name`), so that it is found in a
  // database of any encoding.
  const std::string key_index = fitted_name(base, "_key");
  // An index of this table named `name_sql` (an SQL expression of type name) with the key
  // index's structure.
  const auto index_of_this_table = [&](const std::string& name_sql) {
    return "SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_class c ON c.oid = "
           "i.indexrelid JOIN pg_am am ON am.oid = c.relam\n"
           "    WHERE i.indrelid = " +
           table_here + " AND c.relname = " + name_sql + "\n      AND " + key_index_structure();
  };
  const std::string key_index_name = escape_string_literal(key_index) + "::name";
  if (key_index != base + "_key") {
    const std::string cut = escape_string_literal(base + "_key") + "::name";
    ddl += "DO " + tag +
           "\nDECLARE\n"
           "  cut_index regclass;\n"
           "  key_index regclass;\n"
           "BEGIN\n"
           "  cut_index := (" +
           index_of_this_table(cut) +
           ");\n"
           "  key_index := (" +
           index_of_this_table(key_index_name) +
           ");\n"
           "  IF cut_index IS NOT NULL AND key_index IS NOT NULL THEN\n"
           "    EXECUTE 'DROP INDEX ' || cut_index::text;\n"
           "  ELSIF cut_index IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_class n JOIN pg_class "
           "c\n"
           "      ON n.relnamespace = c.relnamespace WHERE c.oid = cut_index AND n.relname = " +
           escape_string_literal(key_index) +
           ") THEN\n"
           "    EXECUTE 'ALTER INDEX ' || cut_index::text || ' RENAME TO ' || quote_ident(" +
           escape_string_literal(key_index) +
           ");\n"
           "  END IF;\n"
           "END\n" +
           tag + ";\n";
  }
  // The table named in the DDL's schema, not as the search_path finds it: the session's
  // temporary schema comes first there, and a temporary table of the outbox's name would get
  // the key index instead of the table made above.
  ddl += "DO " + tag + "\nBEGIN\n  EXECUTE 'CREATE INDEX IF NOT EXISTS ' || quote_ident(" +
         escape_string_literal(key_index) + ") || ' ON ' || " + in_ddl_schema(table, base) +
         "\n    || ' (ordering_key) WHERE ordering_key IS NOT NULL';\nEND\n" + tag + ";\n";
  // Checked before anything is made, so that the DDL stops whole even when run statement by
  // statement: CREATE INDEX IF NOT EXISTS would skip the key index if another relation of
  // the schema had its name (a user's table, or an index of another definition), and the
  // outbox would then work without it, every claim scanning for its keys.
  std::string guards = "DO " + tag +
                       "\nDECLARE\n"
                       "  existing regclass := to_regclass(" +
                       in_ddl_schema(table, key_index) +
                       ");\n"
                       "BEGIN\n"
                       "  IF existing IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN "
                       "pg_class c ON c.oid = i.indexrelid\n"
                       "      JOIN pg_am am ON am.oid = c.relam WHERE i.indexrelid = existing AND "
                       "i.indrelid = " +
                       table_here + "\n      AND " + key_index_structure() +
                       ") THEN\n"
                       "    RAISE EXCEPTION 'emissions: the outbox''s key index % cannot be made: "
                       "a relation of that name already exists (table %)', existing, " +
                       escape_string_literal(t) +
                       "\n"
                       "      USING ERRCODE = 'duplicate_table', HINT = 'rename or drop that "
                       "relation, or choose another OutboxOptions::table';\n"
                       "  END IF;\n"
                       "END\n" +
                       tag + ";\n";
  // stage() calls this function instead of sending the INSERT: PL/pgSQL keeps the INSERT's
  // plan for the session, so each call costs the parse and plan of `SELECT fn($1, $2)` only,
  // and nothing is left in the caller's session that a pooler or DISCARD ALL could take away
  // (a discarded plan is made again on the next call). The events arrive as one JSON array,
  // expanded by one function scan, which yields the array in order; an INSERT runs serially,
  // so seq follows emit order with no ORDER BY. A JSON null becomes SQL NULL in a record: the
  // payload null is written back as JSON. pg_notify() returns a non-null void: the filter
  // passes every row and notifies once per row, folded into one by the server and delivered
  // at COMMIT (a PERFORM of its own would start the executor once more: ~5 us of server CPU
  // per call). SECURITY INVOKER (the default): the caller needs the same rights
  // on the table as for the INSERT itself; the table is found as written, through the
  // caller's search_path when it is not schema-qualified.
  const std::string body =
      "\nDECLARE\n"
      "  inserted bigint;\n"
      "BEGIN\n"
      "  INSERT INTO " +
      t +
      " (id, name, payload, metadata, emitted_at, ordering_key)\n"
      "  SELECT e.id, e.name, coalesce(e.payload, 'null'), e.metadata, e.emitted_at, e.key\n"
      "  FROM jsonb_to_recordset(staged_events) AS e(id uuid, name text, payload jsonb,\n"
      "    metadata jsonb, emitted_at timestamptz, key text)\n"
      "  WHERE pg_notify(notify_channel, '') IS NOT NULL;\n"
      "  GET DIAGNOSTICS inserted = ROW_COUNT;\n"
      "  RETURN inserted;\n"
      "END\n";
  // The function's name, arguments and JSON keys are an interface between versions: a
  // database may keep the function of an older schema_sql() while newer clients call it.
  // A change to any of them needs a function of another name (and the 42883 message then
  // tells users to run schema_sql() again), never a different body under the same name.
  // CREATE OR REPLACE would take over a function of the user's with this name and these
  // arguments: only one that schema_sql() made (its comment says so) is replaced, or one of
  // exactly this body (a run of an earlier version, which made the function and its comment
  // in two statements, stopped between them). Checked before anything is made, as above.
  guards +=
      "DO " + tag +
      "\nDECLARE\n"
      "  existing regprocedure := to_regprocedure(" +
      stage_function_in_its_schema(table) +
      ");\n"
      "BEGIN\n"
      "  IF existing IS NOT NULL AND coalesce(obj_description(existing, 'pg_proc'), '') NOT "
      "LIKE 'emissions: stages events into %'\n"
      "      AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang\n"
      "        WHERE p.oid = existing AND l.lanname = 'plpgsql' AND p.prosrc = " +
      escape_string_literal(body) +
      ") THEN\n"
      "    RAISE EXCEPTION 'emissions: the function % exists and was not made by "
      "schema_sql(): it would be replaced by the outbox''s staging function', existing\n"
      "      USING ERRCODE = 'duplicate_function', HINT = 'rename or drop that function, or "
      "choose another OutboxOptions::table';\n"
      "  END IF;\n"
      "END\n" +
      tag + ";\n";
  // The function and its comment are made by one statement (one transaction), so that a run
  // stopped anywhere never leaves the function without the comment.
  const std::string create_function = "CREATE OR REPLACE FUNCTION " + fn +
                                      "(staged_events jsonb, notify_channel text)\n"
                                      "RETURNS bigint LANGUAGE plpgsql AS " +
                                      escape_string_literal(body);
  const std::string comment_function =
      "COMMENT ON FUNCTION " + fn + "(jsonb, text) IS " +
      escape_string_literal("emissions: stages events into " + t +
                            " (emissions::postgres::stage(); made by schema_sql())");
  ddl += "DO " + tag + "\nBEGIN\n  EXECUTE " + escape_string_literal(create_function) +
         ";\n  EXECUTE " + escape_string_literal(comment_function) + ";\nEND\n" + tag + ";\n";
  return guards + ddl;
}

std::string stage_function(std::string_view table) {
  const auto [schema, name] = stage_function_parts(table);
  return (schema.empty() ? std::string() : quote_identifier(schema) + ".") + quote_identifier(name);
}

std::vector<std::string> stage_function_signatures(std::string_view table) {
  const auto [schema, name] = stage_function_parts(table);
  const std::string tail = name + "(jsonb, text)";
  if (schema.empty()) return {tail};
  std::vector<std::string> out{schema + "." + tail};
  // The server names the schema as it keeps it: cut to 63 bytes of its encoding when it was
  // longer. Which encoding is not known here: every cut one could make is tried.
  for (const std::string& cut : server_cut_names(schema))
    out.push_back(cut + "." + tail);
  return out;
}

std::string stage_statement(std::string_view table) {
  return stage_statement(table, "$1", "$2");
}

std::string stage_statement(std::string_view table, std::string_view events,
                            std::string_view channel) {
  return stage_statement(table, events, channel, "", "");
}

std::string stage_statement(std::string_view table, std::string_view events,
                            std::string_view channel, std::string_view before_call,
                            std::string_view after_call) {
  // One short statement: stage() gives the parameters' types, so the server parses and plans
  // a function call and nothing else (the INSERT's plan is the function's, kept per session).
  // The FROM clause names the table as a regclass constant, which the server resolves while
  // it parses the FROM clause, before it looks the function up: an outbox that was never
  // created fails with 42P01 (the table), as the contract says, not 42883 (the function).
  // An escape string constant: the caller's session may have standard_conforming_strings
  // off, and a table's name may hold a backslash.
  return "SELECT " + std::string(before_call) + stage_function(table) + "((" + std::string(events) +
         ")::jsonb, (" + std::string(channel) + ")::text)" + std::string(after_call) +
         " FROM (SELECT " + escape_string_literal(quote_table(table, "OutboxOptions::table")) +
         "::regclass) AS outbox";
}

std::string claim_statement(std::string_view table, std::string_view name,
                            std::string_view claim_id, std::chrono::milliseconds lease,
                            std::size_t batch) {
  const std::string t = quote_table(table, "OutboxOptions::table");
  // The lock is a statement of its own: under READ COMMITTED the claim's snapshot is then
  // taken after the previous claimer committed, so it sees that claim's leases. Its key is
  // the table's OID, not its spelling: "outbox", "public.outbox" and "PUBLIC"."outbox"... name
  // one table and take one lock. The lease runs from the moment the rows are claimed
  // (clock_timestamp(): now() is the transaction's start, before the wait for the lock), and
  // the outer UPDATE checks the lease again on the row it locks, so that rows another claim
  // holds are never taken, whatever the lock.
  return "SELECT pg_advisory_xact_lock(1701998957, " + quote_literal(t) +
         "::regclass::oid::integer);\n"
         "UPDATE " +
         t + " AS o SET claimed_by = " + quote_literal(name) +
         ", claim_id = " + quote_literal(claim_id) + ", claimed_until = clock_timestamp() + " +
         lease_interval(lease) +
         ", claims = o.claims + 1 WHERE (o.claimed_until IS NULL OR o.claimed_until <= now()) "
         "AND o.seq = ANY(ARRAY("
         "SELECT c.seq FROM " +
         t +
         " AS c WHERE (c.claimed_until IS NULL OR c.claimed_until <= now()) "
         "AND (c.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM " +
         t +
         " AS b WHERE b.ordering_key IS NOT NULL AND b.ordering_key = c.ordering_key "
         "AND b.claimed_until > now())) "
         "ORDER BY c.seq LIMIT " +
         std::to_string(batch) +
         ")) RETURNING o.seq, o.id, o.name, o.payload::text, o.metadata::text, "
         "(extract(epoch FROM o.emitted_at) * 1000000)::bigint, o.ordering_key";
}

std::string renew_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                            const std::vector<std::string>& claims,
                            std::chrono::milliseconds lease) {
  // clock_timestamp(): the lease runs from the renewal, even if it waited for a row lock.
  return "UPDATE " + quote_table(table, "OutboxOptions::table") +
         " SET claimed_until = clock_timestamp() + " + lease_interval(lease) + " WHERE seq = ANY(" +
         seqs_array(seqs) + ") AND claim_id = ANY(" + claims_array(claims) + ")";
}

std::string delete_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                             const std::vector<std::string>& claims) {
  const std::string t = quote_table(table, "OutboxOptions::table");
  // The outer SELECT sees the table as the statement found it (one snapshot for the whole
  // statement): rows of `seqs` there before the DELETE, whoever holds them now.
  return "WITH gone AS (DELETE FROM " + t + " WHERE seq = ANY(" + seqs_array(seqs) +
         ") AND claim_id = ANY(" + claims_array(claims) +
         ") RETURNING 1) SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM " + t +
         " WHERE seq = ANY(" + seqs_array(seqs) + "))";
}

std::string release_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                              std::string_view claim_id) {
  return "UPDATE " + quote_table(table, "OutboxOptions::table") +
         " SET claimed_by = NULL, claim_id = NULL, claimed_until = NULL WHERE " +
         (seqs.empty() ? std::string() : "seq = ANY(" + seqs_array(seqs) + ") AND ") +
         "claim_id = " + quote_literal(claim_id);
}

std::string set_aside_statement(std::string_view table, const std::vector<std::int64_t>& seqs,
                                std::string_view claim_id, std::string_view name) {
  return "UPDATE " + quote_table(table, "OutboxOptions::table") + " SET claimed_by = " +
         quote_literal(std::string("malformed (") + std::string(name) + ")") +
         ", claim_id = NULL, claimed_until = 'infinity' WHERE seq = ANY(" + seqs_array(seqs) +
         ") AND claim_id = " + quote_literal(claim_id);
}

}  // namespace emissions::postgres::detail
