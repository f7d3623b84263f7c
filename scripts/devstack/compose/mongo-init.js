// Runs once, on the first start of the mongodb service (docker-entrypoint-initdb.d), as root.
// dev_admin lives in dev_database, so the secret's `database` is also its authSource, as in the devstack.
const fs = require("fs");
const password = fs.readFileSync("/run/devsecrets/mongodb", "utf8").trim();
const dev = db.getSiblingDB("dev_database");
dev.createUser({ user: "dev_admin", pwd: password, roles: [{ role: "dbOwner", db: "dev_database" }] });
for (const name of ["users", "sessions", "logs"]) {
  dev.createCollection(name);
}
