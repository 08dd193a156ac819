"""UI strings in English and Russian: one small dict per locale."""

from __future__ import annotations

from collections.abc import Callable

EN: dict[str, str] = {
    "app": "exec-assistant",
    "login": "Log in",
    "logout": "Log out",
    "email": "Email",
    "password": "Password",
    "wrong_login": "Wrong email or password.",
    "too_many_logins": "Too many attempts. Try again in {minutes} min.",
    "link_login": "Or get a one-time login link by email",
    "send_link": "Send me a link",
    "link_sent": "If the address is known, a link is on its way.",
    "link_bad": "This login link is invalid, used or expired.",
    "link_use": "Log in now",
    "pairs": "Pairs",
    "no_pairs": "You are not a member of any pair yet.",
    "today": "Today",
    "week": "Week",
    "changes": "Changes",
    "priorities": "Priorities",
    "latency": "Reply latency",
    "tasks": "Tasks",
    "accounts": "Accounts",
    "settings": "Settings",
    "prev": "Earlier",
    "next": "Later",
    "no_events": "Nothing scheduled.",
    "all_day": "all day",
    "checkpoint": "checkpoint",
    "conflict": "conflict",
    "cancelled": "cancelled",
    "changed": "changed",
    "before": "before",
    "after": "after",
    "private_busy": "Busy (private)",
    "detected": "Detected",
    "kind": "Change",
    "event": "Event",
    "starts": "Starts",
    "notified": "Notifications",
    "channel": "Channel",
    "state": "State",
    "delivered": "Delivered at",
    "retry": "Retry",
    "no_changes": "No changes yet.",
    "outbox": "Messages sent",
    "recipient": "To",
    "subject": "Subject",
    "error": "Error",
    "rule_kind": "Kind",
    "pattern": "Pattern",
    "level": "Level",
    "note": "Note",
    "add": "Add",
    "remove": "Remove",
    "read_only": "Read-only: the manager edits these.",
    "no_rules": "No priority rules yet.",
    "summary": "Summary",
    "answered": "answered",
    "open": "open",
    "median": "Median",
    "p90": "p90",
    "working_min": "working minutes",
    "wall_min": "wall minutes",
    "within_sla": "within SLA",
    "sla": "SLA (working minutes)",
    "open_messages": "Open messages",
    "age": "Waiting",
    "overdue": "overdue",
    "trend": "Weekly trend (median, working minutes)",
    "csv": "Download CSV",
    "reverse": "Assistant's answers to the manager",
    "none_open": "No message waits for an answer.",
    "title": "Title",
    "delegate": "Delegate",
    "term_start": "Term starts",
    "deadline": "Deadline",
    "result": "Result (specific)",
    "measure": "Measure of done",
    "resources": "Resources",
    "why": "Why it matters",
    "create": "Create task",
    "confirm_past_start": "Yes, the term starts in the past: write its checkpoints anyway",
    "red_line": "Red Line",
    "dead_line": "Dead Line",
    "score": "Delegation score",
    "no_score": "not available yet",
    "no_tasks": "No delegated tasks.",
    "timeline": "Timeline",
    "holidays_country": "Public holidays of (country code)",
    "cp_planned": "to be placed", "cp_written": "in the calendar",
    "cp_pinned": "moved there by the manager", "cp_user_deleted": "removed by the manager",
    "cp_to_remove": "being removed", "cp_removed": "removed", "cp_unplaced": "no free slot",
    "answers": "Answers", "no_answers": "No answers yet.", "percent_done": "done",
    "on_time": "on time", "late": "late", "on_track": "on track", "off_track": "off track",
    "needs_help": "needs help",
    "provider": "Provider",
    "last_sync": "Last sync",
    "status": "Status",
    "name": "Name",
    "no_accounts": "No accounts connected.",
    "connect": "Connect an account",
    "connect_google": "Connect Google",
    "connect_microsoft": "Connect Microsoft 365",
    "with_calendar": "calendar",
    "with_mail": "mail (read-only)",
    "add_with_password": "Add an account with a password",
    "server_url": "Address (URL)",
    "host": "Server",
    "port": "Port",
    "security": "Security",
    "username": "User name",
    "mailbox": "Mailbox (email address)",
    "service_endpoint": "EWS address (https://.../EWS/Exchange.asmx)",
    "location": "Feed address (https://... .ics)",
    "check": "Check",
    "reconnect": "Reconnect",
    "new_password": "New password",
    "not_configured": (
        "Signing in with this provider is not set up yet: the administrator fills in its "
        "OAuth client in the settings."
    ),
    "n_connected": "The account is connected. Its first sync follows shortly.",
    "n_reconnected": "The account is reconnected.",
    "n_added": "The account is added. Use Check to try the connection.",
    "n_saved": "The new password is stored.",
    # editing, disabling and removing accounts; the add form's provider choice
    "edit": "Edit",
    "cancel": "Cancel",
    "disable": "Disable",
    "enable": "Enable",
    "account_disabled": "disabled",
    "disabled_status": "Disabled: not synced until it is enabled again.",
    "edit_account": "Edit account",
    "edit_elsewhere": (
        "This account signs in with its provider (use Reconnect) or was set up by the "
        "administrator; only its name and password can be changed here."
    ),
    "password_keep": "leave empty to keep the stored one",
    "remove_account": "Remove account",
    "remove_what": (
        "The account and what was read from it (its events as last seen) are removed from "
        "the assistant. The calendar or mailbox itself is not touched."
    ),
    "remove_written": (
        "Delegated tasks wrote {n} checkpoint event(s) into this calendar. They stay there, "
        "and the assistant will no longer move or delete them."
    ),
    "n_removed": "The account is removed.",
    "n_disabled": "The account is disabled: it is not synced until you enable it.",
    "n_enabled": "The account is enabled: it is synced at the next poll.",
    "n_edited": "The account's settings are saved. Use Check to try the connection.",
    "choose_provider": "Choose…",
    "show_fields": "Show its fields",
    "p_imap": "IMAP mail",
    "p_caldav": "CalDAV calendar",
    "p_ics": "Calendar feed (ICS link)",
    "p_ews": "Exchange (EWS) calendar",
    "p_ews_mail": "Exchange (EWS) mail",
    "missing_google": (
        "Google sign-in is not set up: the administrator enters the Google OAuth client "
        "(oauth.google.client_id and its secret) in the settings."
    ),
    "missing_microsoft": (
        "Microsoft sign-in is not set up: the administrator enters the Microsoft OAuth "
        "client (oauth.microsoft.client_id) in the settings."
    ),
    "missing_https": (
        "Sign-in needs the app's https:// address: the administrator sets web.public_url "
        "to it (Google and Microsoft return only to https addresses)."
    ),
    "n_denied": "Access was not granted, so nothing was connected.",
    "n_refused": (
        "The provider refused the sign-in (the code was not accepted). Nothing was "
        "stored; please try again."
    ),
    "n_no_refresh": (
        "The provider gave no lasting access (no refresh token). Remove the app's access "
        "in your account settings and connect again."
    ),
    "n_unreachable": (
        "The provider could not be reached, so nothing was connected. Try again later."
    ),
    "n_other_user": "You signed in as a different user than this account's. Nothing was changed.",
    "state_bad": (
        "This sign-in cannot be finished: it was not started here or was altered. Start "
        "again from the accounts page."
    ),
    "state_expired": "This sign-in took too long and expired. Start again from the accounts page.",
    "state_session": (
        "This sign-in was started in another login session. Start again from the accounts "
        "page."
    ),
    "not_synced": "Not synced yet.",
    "working": "Working.",
    "health_banner": "Not syncing:",
    "health_parked": (
        "Credentials refused since {since} (tries: {n}): no longer tried until they change."
    ),
    "health_retry": "Failing since {since} (tries failed: {n}); next try {next}.",
    "check_ok": "The connection works.",
    "check_auth": "The server refused the password, or access was revoked: reconnect the account.",
    "check_secret": (
        "The stored password or token cannot be read any more (the service's key "
        "changed): reconnect the account."
    ),
    "check_unreachable": "Could not reach the server. Check the address, or try again later.",
    "check_rate": "The server asked us to slow down. Try again in a few minutes.",
    "check_not_found": "The calendar or mailbox was not found at this address.",
    "check_invalid": "The server answered with something we cannot read.",
    "check_config": "The account's settings are incomplete or one of its secrets cannot be read.",
    "check_failed": "The check failed; the account's status says why.",
    "timezone": "Time zone",
    "assistant_timezone": "Assistant's time zone",
    "working_hours": "Working hours",
    "quiet_hours": "Quiet hours",
    "from": "from",
    "to": "to",
    "high_breaks": "high-priority changes break through",
    "digest_time": "Daily digest at",
    "channels": "Channels",
    "locale": "Language",
    "share_private": "Show private events in detail",
    "save": "Save",
    "saved": "Saved.",
    "language": "Language",
    "forbidden": "You may not do this.",
    "not_found": "Not found.",
    "csrf": "The form expired or was not sent from this site. Reload the page and try again.",
    "change_password": "Change password",
    "current_password": "Current password",
    "password_changed": "Your password is changed; your other sessions are signed out.",
    "wrong_password": "The current password is wrong.",
    "password_short": "A password needs at least {n} characters.",
    # the week calendar (week.html)
    "calendar": "Calendar",
    "week_calendar": "Calendar of all your pairs",
    "day_view": "Day",
    "prev_day": "Previous day",
    "next_day": "Next day",
    "prev_week": "Previous week",
    "next_week": "Next week",
    "now": "now",
    "times_in": "times in",
    "was_here": "was here",
    "moved_from": "moved from",
    "private": "private",
    "conflict_overlap": "double-booked",
    "conflict_travel": "no time to travel",
    "more_pairs": "Only the first managers are shown: open a pair for the others.",
}

RU: dict[str, str] = {
    "app": "exec-assistant",
    "login": "Войти",
    "logout": "Выйти",
    "email": "Эл. почта",
    "password": "Пароль",
    "wrong_login": "Неверная почта или пароль.",
    "too_many_logins": "Слишком много попыток. Попробуйте снова через {minutes} мин.",
    "link_login": "Или получите одноразовую ссылку для входа по почте",
    "send_link": "Прислать ссылку",
    "link_sent": "Если адрес известен, ссылка уже в пути.",
    "link_bad": "Ссылка для входа неверна, уже использована или устарела.",
    "link_use": "Войти сейчас",
    "pairs": "Пары",
    "no_pairs": "Вы пока не состоите ни в одной паре.",
    "today": "Сегодня",
    "week": "Неделя",
    "changes": "Изменения",
    "priorities": "Приоритеты",
    "latency": "Скорость ответов",
    "tasks": "Задачи",
    "accounts": "Учётные записи",
    "settings": "Настройки",
    "prev": "Раньше",
    "next": "Позже",
    "no_events": "Ничего не запланировано.",
    "all_day": "весь день",
    "checkpoint": "контрольная точка",
    "conflict": "конфликт",
    "cancelled": "отменено",
    "changed": "изменено",
    "before": "было",
    "after": "стало",
    "private_busy": "Занят (личное)",
    "detected": "Обнаружено",
    "kind": "Изменение",
    "event": "Событие",
    "starts": "Начало",
    "notified": "Уведомления",
    "channel": "Канал",
    "state": "Состояние",
    "delivered": "Доставлено",
    "retry": "Повторить",
    "no_changes": "Изменений пока нет.",
    "outbox": "Отправленные сообщения",
    "recipient": "Кому",
    "subject": "Тема",
    "error": "Ошибка",
    "rule_kind": "Вид",
    "pattern": "Шаблон",
    "level": "Уровень",
    "note": "Заметка",
    "add": "Добавить",
    "remove": "Удалить",
    "read_only": "Только просмотр: приоритеты задаёт руководитель.",
    "no_rules": "Правил приоритета пока нет.",
    "summary": "Сводка",
    "answered": "отвечено",
    "open": "ждут ответа",
    "median": "Медиана",
    "p90": "p90",
    "working_min": "рабочих минут",
    "wall_min": "минут по часам",
    "within_sla": "в пределах SLA",
    "sla": "SLA (рабочих минут)",
    "open_messages": "Сообщения без ответа",
    "age": "Ждёт",
    "overdue": "просрочено",
    "trend": "Динамика по неделям (медиана, рабочие минуты)",
    "csv": "Скачать CSV",
    "reverse": "Ответы ассистента руководителю",
    "none_open": "Все сообщения получили ответ.",
    "title": "Название",
    "delegate": "Исполнитель",
    "term_start": "Начало срока",
    "deadline": "Срок",
    "result": "Результат (конкретно)",
    "measure": "Критерий готовности",
    "resources": "Ресурсы",
    "why": "Зачем это нужно",
    "create": "Создать задачу",
    "confirm_past_start": "Да, срок начался в прошлом: всё равно поставить контрольные точки",
    "red_line": "Красная линия",
    "dead_line": "Мёртвая линия",
    "score": "Оценка делегирования",
    "no_score": "пока нет данных",
    "no_tasks": "Делегированных задач нет.",
    "timeline": "Шкала",
    "holidays_country": "Праздники страны (код)",
    "cp_planned": "ещё не в календаре", "cp_written": "в календаре",
    "cp_pinned": "перенесена руководителем", "cp_user_deleted": "удалена руководителем",
    "cp_to_remove": "удаляется", "cp_removed": "удалена", "cp_unplaced": "нет свободного окна",
    "answers": "Ответы", "no_answers": "Ответов пока нет.", "percent_done": "сделано",
    "on_time": "в срок", "late": "с опозданием", "on_track": "по плану",
    "off_track": "отстаёт", "needs_help": "нужна помощь",
    "provider": "Провайдер",
    "last_sync": "Последняя синхронизация",
    "status": "Состояние",
    "name": "Имя",
    "no_accounts": "Учётные записи не подключены.",
    "connect": "Подключить учётную запись",
    "connect_google": "Подключить Google",
    "connect_microsoft": "Подключить Microsoft 365",
    "with_calendar": "календарь",
    "with_mail": "почта (только чтение)",
    "add_with_password": "Добавить учётную запись с паролем",
    "server_url": "Адрес (URL)",
    "host": "Сервер",
    "port": "Порт",
    "security": "Защита",
    "username": "Имя пользователя",
    "mailbox": "Почтовый ящик (адрес)",
    "service_endpoint": "Адрес EWS (https://.../EWS/Exchange.asmx)",
    "location": "Адрес календаря (https://... .ics)",
    "check": "Проверить",
    "reconnect": "Переподключить",
    "new_password": "Новый пароль",
    "not_configured": (
        "Вход через этого провайдера ещё не настроен: администратор указывает "
        "OAuth-клиент в настройках."
    ),
    "n_connected": "Учётная запись подключена. Первая синхронизация скоро начнётся.",
    "n_reconnected": "Учётная запись переподключена.",
    "n_added": "Учётная запись добавлена. Нажмите «Проверить», чтобы проверить соединение.",
    "n_saved": "Новый пароль сохранён.",
    "edit": "Изменить",
    "cancel": "Отмена",
    "disable": "Отключить",
    "enable": "Включить",
    "account_disabled": "отключена",
    "disabled_status": "Отключена: не синхронизируется, пока её снова не включат.",
    "edit_account": "Изменить учётную запись",
    "edit_elsewhere": (
        "Эта учётная запись входит через своего провайдера (используйте «Переподключить») "
        "или настроена администратором; здесь можно изменить только её имя и пароль."
    ),
    "password_keep": "оставьте пустым, чтобы сохранить прежний",
    "remove_account": "Удалить учётную запись",
    "remove_what": (
        "Учётная запись и то, что из неё прочитано (последний снимок событий), удаляются "
        "из помощника. Сам календарь или почтовый ящик не меняется."
    ),
    "remove_written": (
        "Делегированные задачи записали в этот календарь контрольных точек: {n}. Они "
        "останутся там, и помощник больше не будет их переносить или удалять."
    ),
    "n_removed": "Учётная запись удалена.",
    "n_disabled": "Учётная запись отключена: она не синхронизируется, пока вы её не включите.",
    "n_enabled": "Учётная запись включена: она синхронизируется при следующем опросе.",
    "n_edited": "Настройки сохранены. Нажмите «Проверить», чтобы проверить соединение.",
    "choose_provider": "Выберите…",
    "show_fields": "Показать поля",
    "p_imap": "Почта IMAP",
    "p_caldav": "Календарь CalDAV",
    "p_ics": "Календарь по ссылке (ICS)",
    "p_ews": "Календарь Exchange (EWS)",
    "p_ews_mail": "Почта Exchange (EWS)",
    "missing_google": (
        "Вход через Google не настроен: администратор указывает OAuth-клиент Google "
        "(oauth.google.client_id и его секрет) в настройках."
    ),
    "missing_microsoft": (
        "Вход через Microsoft не настроен: администратор указывает OAuth-клиент Microsoft "
        "(oauth.microsoft.client_id) в настройках."
    ),
    "missing_https": (
        "Для входа нужен https-адрес приложения: администратор указывает его в "
        "web.public_url (Google и Microsoft возвращают только на https-адреса)."
    ),
    "n_denied": "Доступ не был предоставлен, ничего не подключено.",
    "n_refused": (
        "Провайдер отклонил вход (код не принят). Ничего не сохранено, попробуйте ещё "
        "раз."
    ),
    "n_no_refresh": (
        "Провайдер не дал постоянного доступа (нет refresh-токена). Отзовите доступ "
        "приложения в настройках аккаунта и подключите снова."
    ),
    "n_unreachable": "Провайдер недоступен, ничего не подключено. Попробуйте позже.",
    "n_other_user": (
        "Вы вошли как другой пользователь, не владелец этой учётной записи. Ничего не "
        "изменено."
    ),
    "state_bad": (
        "Этот вход нельзя завершить: он начат не здесь или изменён. Начните заново со "
        "страницы учётных записей."
    ),
    "state_expired": (
        "Вход занял слишком много времени и устарел. Начните заново со страницы учётных "
        "записей."
    ),
    "state_session": "Этот вход начат в другом сеансе. Начните заново со страницы учётных записей.",
    "check_ok": "Соединение работает.",
    "not_synced": "Ещё не синхронизировалась.",
    "working": "Работает.",
    "health_banner": "Не синхронизируются:",
    "health_parked": (
        "Данные для входа отклонены с {since} (попыток: {n}): сервис не пытается, "
        "пока они не изменятся."
    ),
    "health_retry": "Сбой с {since}: неудачных попыток — {n}; следующая {next}.",
    "check_auth": "Сервер отклонил пароль или доступ отозван: переподключите учётную запись.",
    "check_secret": (
        "Сохранённый пароль или токен больше нельзя прочитать (ключ сервиса изменился): "
        "переподключите учётную запись."
    ),
    "check_unreachable": "Сервер недоступен. Проверьте адрес или попробуйте позже.",
    "check_rate": "Сервер просит снизить частоту запросов. Попробуйте через несколько минут.",
    "check_not_found": "Календарь или почтовый ящик по этому адресу не найден.",
    "check_invalid": "Сервер ответил данными, которые мы не можем прочитать.",
    "check_config": "Настройки учётной записи неполны или один из её секретов нельзя прочитать.",
    "check_failed": "Проверка не удалась; причина указана в статусе учётной записи.",
    "timezone": "Часовой пояс",
    "assistant_timezone": "Часовой пояс ассистента",
    "working_hours": "Рабочие часы",
    "quiet_hours": "Тихие часы",
    "from": "с",
    "to": "до",
    "high_breaks": "важные изменения приходят и в тихие часы",
    "digest_time": "Ежедневная сводка в",
    "channels": "Каналы",
    "locale": "Язык",
    "share_private": "Показывать личные события подробно",
    "save": "Сохранить",
    "saved": "Сохранено.",
    "language": "Язык",
    "forbidden": "Это действие вам недоступно.",
    "not_found": "Не найдено.",
    "csrf": "Форма устарела или отправлена не с этого сайта. Обновите страницу и повторите.",
    "change_password": "Сменить пароль",
    "current_password": "Текущий пароль",
    "password_changed": "Пароль изменён; другие ваши сеансы завершены.",
    "wrong_password": "Текущий пароль неверен.",
    "password_short": "Пароль должен быть не короче {n} символов.",
    # the week calendar (week.html)
    "calendar": "Календарь",
    "week_calendar": "Календарь всех ваших пар",
    "day_view": "День",
    "prev_day": "Предыдущий день",
    "next_day": "Следующий день",
    "prev_week": "Предыдущая неделя",
    "next_week": "Следующая неделя",
    "now": "сейчас",
    "times_in": "время:",
    "was_here": "было здесь",
    "moved_from": "перенесено с",
    "private": "личное",
    "conflict_overlap": "накладка",
    "conflict_travel": "нет времени на дорогу",
    "more_pairs": "Показаны только первые руководители: остальных смотрите на странице пары.",
}

LOCALES: dict[str, dict[str, str]] = {"en": EN, "ru": RU}

# The notes the accounts page shows after an action (?note=...): anything else is ignored.
NOTES = frozenset({
    "n_connected", "n_reconnected", "n_added", "n_saved", "n_denied", "n_refused",
    "n_no_refresh", "n_unreachable", "n_other_user", "check_ok", "check_auth",
    "check_secret", "check_unreachable", "check_rate", "check_not_found", "check_invalid",
    "check_config", "check_failed", "not_configured", "n_removed", "n_disabled", "n_enabled",
    "n_edited",
})  # fmt: skip
GOOD_NOTES = frozenset({"n_connected", "n_reconnected", "n_added", "n_saved", "check_ok",
                        "n_removed", "n_disabled", "n_enabled", "n_edited"})  # fmt: skip


def translator(locale: str) -> Callable[[str], str]:
    words = LOCALES.get(locale, EN)

    def t(key: str) -> str:
        return words.get(key) or EN.get(key) or key

    return t
