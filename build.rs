// sqlx::migrate! embeds the migrations at compile time; without this a new
// migration file would not be seen until some source file changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
