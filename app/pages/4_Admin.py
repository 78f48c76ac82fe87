"""Admin: users and their roles (local accounts, and role mappings for OpenID Connect users), and the
append-only audit log with its CSV export. Admins only (and the user of the local single-user demo)."""

from __future__ import annotations

import streamlit as st

from mmnar_app import admin, history
from mmnar_app.plain_text import plain
from mmnar_app.store import StoreError
from mmnar_app.store.users import MIN_PASSWORD_LENGTH, ROLES, UserStore
from mmnar_app.ui import page_header, service, store

principal = page_header("Admin", require="admin")
info = service().info
db = store()
users = UserStore(db)
me = principal.username
mode = principal.mode

if mode == "demo":
    st.info(
        "Local single-user demo: nobody signs in, so these accounts are not used until the app runs with "
        "`MMNAR_AUTH=local` (or with OpenID Connect, where a row here sets a user's role).",
        icon=":material/info:",
    )

tab_users, tab_audit = st.tabs(["Users", "Audit log"])
with tab_users:
    done = st.session_state.pop("admin_done", None)  # the outcome of the last change, shown after the rerun
    if done:
        st.success(plain(done))
    rows = users.list()
    st.dataframe(admin.user_rows(rows), hide_index=True)
    if not rows:
        st.caption("No users yet.")
    left, right = st.columns(2)
    with left.form("admin_add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        name = st.text_input("User name (for OpenID Connect: the e-mail address it signs in with)", key="add_name")
        role = st.selectbox("Role", ROLES, key="add_role")
        password = st.text_input(
            f"Password (at least {MIN_PASSWORD_LENGTH} characters; leave empty for a user "
            "who signs in through OpenID Connect)",
            type="password",
            key="add_password",
        )
        confirm = st.text_input("Password again", type="password", key="add_confirm")
        if st.form_submit_button("Add user"):
            try:
                if password != confirm:
                    raise StoreError("the two passwords differ")
                if mode == "local" and not password:
                    raise StoreError("local accounts need a password")
                user = admin.add_user(users, db, me, info.version, name, role, password or None)
                st.session_state["admin_done"] = f"Added {user.username} as {user.role}."
                st.rerun()  # the lists above show the new user at once
            except StoreError as error:
                st.error(f"Not added: {plain(error)}")
    with right.form("admin_change_user", clear_on_submit=True):
        st.markdown("**Change a user**")
        target = st.selectbox(
            "User", [u.username for u in rows], key="change_user", index=None, placeholder="choose a user"
        )
        action = st.radio("Change", admin.USER_ACTIONS, key="change_action", horizontal=True)
        new_role = st.selectbox("New role (for: change role)", ROLES, key="change_role")
        new_password = st.text_input("New password (for: set password)", type="password", key="change_password")
        if st.form_submit_button("Apply"):
            try:
                if not target:
                    raise StoreError("choose a user")
                if action == "set password" and not new_password:
                    raise StoreError("type the new password")
                user = admin.change_user(
                    users, db, me, info.version, target, action, role=new_role, password=new_password or None
                )
                st.session_state["admin_done"] = f"{action.capitalize()}: done for {user.username}."
                st.rerun()
            except StoreError as error:
                st.error(f"Not changed: {plain(error)}")
    st.caption(
        "Every change is recorded in the audit log. Accounts can also be managed on the server with "
        "`python -m mmnar_app.accounts` (add, list, disable, enable, set-role, set-password, unlock)."
    )

with tab_audit:
    a, b = st.columns(2)
    action_filter = a.selectbox(
        "Action",
        [
            "(all)",
            "sign-in",
            "sign-in-failed",
            "sign-out",
            "denied",
            "analyse",
            "save",
            "view",
            "compare",
            "export",
            "user-add",
            "user-change-role",
            "user-disable",
            "user-enable",
            "user-unlock",
            "user-set-password",
        ],
        key="audit_action",
    )
    user_filter = b.text_input("User", key="audit_user")
    entries = db.audit_log(
        limit=500, action=None if action_filter == "(all)" else action_filter, user=user_filter.strip() or None
    )
    st.dataframe(history.audit_rows(entries), hide_index=True)
    st.caption(
        "Newest first, up to 500 rows here; the export has every entry. Append-only: the database rejects "
        "any change or deletion of these rows."
    )
    st.download_button(
        "Export the whole audit log as CSV",
        lambda: admin.export_audit_csv(db, me, info.version),
        file_name="mmnar-audit-log.csv",
        mime="text/csv",
        key="audit_export",
        on_click="ignore",
    )
