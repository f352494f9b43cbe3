<?php

/*
 * What the interop tests need from PHP: prints one line per missing extension or class and
 * exits 1, or prints "ok" and the Symfony Messenger version.
 */

declare(strict_types=1);

$missing = [];
foreach (['redis', 'amqp', 'pdo_pgsql', 'pdo_mysql', 'json'] as $extension) {
    if (!extension_loaded($extension)) {
        $missing[] = "PHP extension $extension";
    }
}
$autoloads = [
    'Symfony/Component/Messenger/autoload.php',
    'Symfony/Component/Serializer/autoload.php',
    'Symfony/Component/PropertyAccess/autoload.php',
    'Symfony/Component/PropertyInfo/autoload.php',
    'Symfony/Component/EventDispatcher/autoload.php',
    'Symfony/Component/DependencyInjection/autoload.php',
    'Symfony/Component/Console/autoload.php',
    'Symfony/Component/ErrorHandler/autoload.php',
    'Doctrine/DBAL/autoload.php',
];
foreach ($autoloads as $autoload) {
    if (!is_file('/usr/share/php/'.$autoload)) {
        $missing[] = "/usr/share/php/$autoload";
    }
}
if ($missing) {
    echo implode("\n", $missing), "\n";
    exit(1);
}
require __DIR__.'/bootstrap.php';
foreach ([
    Symfony\Component\Messenger\Bridge\Redis\Transport\RedisTransport::class,
    Symfony\Component\Messenger\Bridge\Doctrine\Transport\DoctrineTransport::class,
    Symfony\Component\Messenger\Bridge\Amqp\Transport\AmqpTransport::class,
    Symfony\Component\ErrorHandler\Exception\FlattenException::class,
] as $class) {
    if (!class_exists($class)) {
        $missing[] = "class $class";
    }
}
if ($missing) {
    echo implode("\n", $missing), "\n";
    exit(1);
}
echo "ok\n";
